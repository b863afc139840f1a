"""Operations: runs (train, save, evaluate, record), the train-and-evaluate pipeline,
champion/challenger promotion, served recommendations, sweeps and explanations."""

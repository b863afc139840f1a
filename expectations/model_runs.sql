select
    *,
    -- the step kept is one that was trained (null for models without training steps)
    best_step is null or (best_step >= 1 and best_step <= stopped_step) as check_best_step_was_trained
from model_runs

"""Torch recommenders in three parts (LensKit's flexmf layout).

- :mod:`.modules`: the ``nn.Module`` networks (dot product, hybrid MLP, two towers),
  nothing else;
- :mod:`.trainer`: the one BCE training loop every network shares;
- :mod:`.recommenders`: the :class:`jamrec.models.base.Recommender` classes that own a
  trained network (``mbcf``, ``hybrid``): fitting, scoring, save and load;
  :mod:`.two_tower` the same for ``two_tower`` (features + ids, scored by a dot product).
"""

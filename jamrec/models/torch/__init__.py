"""Torch recommenders in three parts (LensKit's flexmf layout).

- :mod:`.modules`: the ``nn.Module`` networks (dot product, hybrid MLP), nothing else;
- :mod:`.trainer`: the one BCE training loop both networks share;
- :mod:`.recommenders`: the :class:`jamrec.models.base.Recommender` classes that own a
  trained network (``mbcf``, ``hybrid``): fitting, scoring, save and load.
"""

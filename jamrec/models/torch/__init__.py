"""Torch recommenders in three parts (LensKit's flexmf layout).

- :mod:`.modules`: the ``nn.Module`` networks (dot product, hybrid MLP, two towers),
  nothing else;
- :mod:`.trainer`: the one BCE training loop every network shares, with
  :mod:`.kernels` its compiled CPU update steps;
- :mod:`.recommenders`: the :class:`jamrec.models.base.Recommender` classes that own a
  trained network (``mbcf``, ``hybrid``): fitting, scoring, save and load;
  :mod:`.two_tower` the same for ``two_tower`` (features + ids, scored by a dot product).

Training at TIMJ scale reads and writes random rows of embedding tables and their Adam
moments (~0.5 GB for MBCF): with 4 KiB pages nearly every row costs a TLB miss, which on
these virtual machines is a long page walk. torch puts its CPU buffers of 2 MB and more on
transparent huge pages when ``THP_MEM_ALLOC_ENABLE=1`` (read at its first large
allocation), so it is set here unless the environment says otherwise: MBCF's fused step
went from 9.9 to 7.6 ms at TIMJ's table sizes (benchmarks/RESULTS.md, "Training step").
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

"""Counter-based randomness: values that are a pure function of their keys.

Used where a random draw must not depend on batching or on call order (sampled
evaluation candidates, the random baseline): ``splitmix64(key)`` of a uint64 counter.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 of a uint64 array (wraps silently): a counter-based random stream."""
    x = x + GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))

"""Names of the published warehouse that code on both sides of it relies on.

The build writes them (``sql/``), models and reports read them; both import them from here
so that neither depends on the other. ``docs/warehouse.md`` describes every table.
"""

from __future__ import annotations

# The 11 audio features every Kaggle variant has, as columns of ``tracks``, in their
# documented units (0..1, dB, BPM, pitch class, major/minor).
AUDIO_FEATURES = (
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
)

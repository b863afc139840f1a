select
    track_id,
    bias
from truth_tracks

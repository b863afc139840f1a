select
    user_id,
    track_id,
    track_id not in (select track_id from tracks) as check_track_not_in_tracks,
    count(*) over (partition by user_id, track_id) = 1 as check_pair_unique
from int_positives_without_features

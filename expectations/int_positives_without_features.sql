select
    user_id,
    track_id,
    hash(user_id, track_id) as user_track_key,
    track_id not in (select track_id from tracks) as check_track_not_in_tracks
from int_positives_without_features

select
    positives.user_id,
    positives.track_id,
    hash(positives.user_id, positives.track_id) as user_track_key,
    positives.track_id not in (select tracks.track_id from tracks) as check_track_not_in_tracks
from int_positives_without_features as positives

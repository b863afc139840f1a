with timj_users as (
    select user_id from jams
    union
    select user_id from likes
)

select
    user_id,
    track_id,
    is_creator,
    is_liker,
    n_jams,
    n_likes,
    hash(user_id, track_id) as user_track_key,
    track_id in (select track_id from tracks) as check_track_in_tracks,
    user_id in (select user_id from timj_users) as check_user_in_timj,
    (is_creator or is_liker) and (n_jams > 0) = is_creator and (n_likes > 0) = is_liker
        as check_has_a_source
from interactions

with timj_users as (
    select user_id from jams
    union
    select user_id from likes
)

select
    interactions.user_id,
    interactions.track_id,
    interactions.is_creator,
    interactions.is_liker,
    interactions.n_jams,
    interactions.n_likes,
    hash(interactions.user_id, interactions.track_id) as user_track_key,
    interactions.track_id in (select tracks.track_id from tracks) as check_track_in_tracks,
    interactions.user_id in (select timj_users.user_id from timj_users) as check_user_in_timj,
    (interactions.is_creator or interactions.is_liker)
    and (interactions.n_jams > 0) = interactions.is_creator
    and (interactions.n_likes > 0) = interactions.is_liker as check_has_a_source
from interactions

with per_user as (
    select
        user_id,
        count(*) as negatives_of_user
    from negatives
    group by user_id
),

positive_users as (
    select distinct user_id from interactions
)

select
    negatives.user_id,
    negatives.track_id,
    per_user.negatives_of_user,
    hash(negatives.user_id, negatives.track_id) as user_track_key,
    negatives.track_id in (select tracks.track_id from tracks) as check_track_in_tracks,
    negatives.user_id in (select positive_users.user_id from positive_users)
        as check_user_in_interactions,
    interactions.user_id is null as check_not_a_positive
from negatives
inner join per_user on negatives.user_id = per_user.user_id
left join interactions
    on negatives.user_id = interactions.user_id and negatives.track_id = interactions.track_id

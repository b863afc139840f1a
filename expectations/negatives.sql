with per_user as (
    select
        user_id,
        count(*) as negatives_of_user
    from negatives
    group by user_id
),

train_positives as (
    select
        user_id,
        track_id
    from splits
    where split = 'train'
),

train_users as (
    select distinct user_id from train_positives
)

select
    negatives.user_id,
    negatives.track_id,
    per_user.negatives_of_user,
    hash(negatives.user_id, negatives.track_id) as user_track_key,
    negatives.track_id in (select tracks.track_id from tracks) as check_track_in_tracks,
    negatives.user_id in (select train_users.user_id from train_users) as check_user_has_train,
    train_positives.user_id is null as check_not_a_train_positive
from negatives
inner join per_user on negatives.user_id = per_user.user_id
left join train_positives
    on negatives.user_id = train_positives.user_id and negatives.track_id = train_positives.track_id

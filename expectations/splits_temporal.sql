with per_user as (
    select
        user_id,
        count(*) filter (where split = 'train') as n_train
    from splits_temporal
    group by user_id
),

train_tracks as (
    select distinct track_id
    from splits_temporal
    where split = 'train'
)

-- The frame holds what the suite checks: the ids only through their hash (pandas copies
-- every column of the frame once per expectation).
select
    splits_temporal.split,
    splits_temporal.positive_date,
    splits_temporal.cut_date,
    hash(splits_temporal.user_id, splits_temporal.track_id) as user_track_key,
    splits_temporal.split != 'train'
    or splits_temporal.positive_date < splits_temporal.cut_date as check_train_before_cut,
    splits_temporal.split = 'train'
    or splits_temporal.positive_date >= splits_temporal.cut_date as check_held_out_after_cut,
    splits_temporal.split != 'test' or per_user.n_train > 0 as check_test_user_has_train,
    splits_temporal.split != 'new_user' or per_user.n_train = 0 as check_new_user_has_no_train,
    splits_temporal.new_track = (train_tracks.track_id is null) as check_new_track_flag,
    interactions.user_id is not null as check_is_an_interaction
from splits_temporal
inner join per_user on splits_temporal.user_id = per_user.user_id
left join train_tracks on splits_temporal.track_id = train_tracks.track_id
left join interactions
    on splits_temporal.user_id = interactions.user_id and splits_temporal.track_id = interactions.track_id

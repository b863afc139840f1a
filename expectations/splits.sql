with per_user as (
    select
        user_id,
        count(*) filter (where split = 'train') as n_train,
        count(*) filter (where split = 'val') as n_val,
        count(*) filter (where split = 'test') as n_test
    from splits
    group by user_id
)

-- The frame holds what the suite checks: the ids only through their hash (pandas copies
-- every column of the frame once per expectation).
select
    splits.split,
    per_user.n_test as user_test_rows,
    per_user.n_val as user_val_rows,
    hash(splits.user_id, splits.track_id) as user_track_key,
    per_user.n_train > 0 as check_user_has_train,
    interactions.user_id is not null as check_is_an_interaction
from splits
inner join per_user on splits.user_id = per_user.user_id
left join interactions
    on splits.user_id = interactions.user_id and splits.track_id = interactions.track_id

with positives as (
    select
        user_id,
        track_id
    from interactions
),

ranked as (
    select
        user_id,
        track_id,
        row_number() over (
            partition by user_id
            order by hash('splits', getvariable('seed'), user_id, track_id), track_id
        ) as position,
        count(*) over (partition by user_id) as n_positives
    from positives
)

select
    user_id,
    track_id,
    case
        -- Too few positives to hold any out and keep one for training.
        when n_positives < getvariable('k_test') + getvariable('k_val') + 1 then 'train'
        when position <= getvariable('k_test') then 'test'
        when position <= getvariable('k_test') + getvariable('k_val') then 'val'
        else 'train'
    end as split
from ranked

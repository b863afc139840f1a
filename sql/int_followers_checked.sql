with staged as (
    select * from stg_followers
),

repeated_pairs as (
    select
        followed_user_id,
        follower_user_id,
        min(line_number) as first_line
    from staged
    where reject_reason is null
    group by followed_user_id, follower_user_id
    having count(*) > 1
)

select
    staged.* exclude (reject_reason),
    coalesce(
        staged.reject_reason,
        case
            when staged.line_number > repeated_pairs.first_line
                then format('duplicate follow (first on line {})', repeated_pairs.first_line)
        end
    ) as reject_reason
from staged
left join repeated_pairs
    on
        staged.followed_user_id = repeated_pairs.followed_user_id
        and staged.follower_user_id = repeated_pairs.follower_user_id
        and staged.reject_reason is null

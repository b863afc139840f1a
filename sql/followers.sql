with checked as (
    select * from int_followers_checked
    where reject_reason is null
)

select
    followed_user_id,
    follower_user_id,
    line_number as source_line
from checked

with checked as (
    select * from int_likes_checked
    where reject_reason is null
)

select
    user_id,
    jam_id,
    line_number as source_line
from checked

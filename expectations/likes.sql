with jam_ids as (
    select jam_id from jams
)

select
    user_id,
    jam_id,
    jam_id in (select jam_id from jam_ids) as check_jam_exists,
    count(*) over (partition by user_id, jam_id) = 1 as check_like_unique
from likes

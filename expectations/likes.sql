select
    user_id,
    jam_id,
    jam_id in (select jam_id from jams) as check_jam_exists,
    -- a 64-bit hash of the pair: pandas checks uniqueness of integers in a fraction of a second
    hash(user_id, jam_id) as user_jam_key
from likes

select
    likes.user_id,
    likes.jam_id,
    likes.jam_id in (select jams.jam_id from jams) as check_jam_exists,
    -- a 64-bit hash of the pair: pandas checks uniqueness of integers in a fraction of a second
    hash(likes.user_id, likes.jam_id) as user_jam_key
from likes

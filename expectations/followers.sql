select
    followed_user_id,
    follower_user_id,
    count(*) over (partition by followed_user_id, follower_user_id) = 1 as check_follow_unique
from followers

select
    followed_user_id,
    follower_user_id,
    hash(followed_user_id, follower_user_id) as follow_key
from followers

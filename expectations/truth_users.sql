select user_id from truth_users

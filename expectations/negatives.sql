with positives as (
    select user_id, track_id from interactions
)

select
    user_id,
    track_id,
    count(*) over (partition by user_id) as negatives_of_user,
    track_id in (select track_id from tracks) as check_track_in_tracks,
    user_id in (select user_id from positives) as check_user_in_interactions,
    (user_id, track_id) not in (select (user_id, track_id) from positives) as check_not_a_positive,
    count(*) over (partition by user_id, track_id) = 1 as check_pair_unique
from negatives

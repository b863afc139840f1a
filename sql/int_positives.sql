with playable_jams as (
    select jam_id, user_id, track_id, creation_date
    from jams
    where track_id is not null
),

creators as (
    select
        user_id,
        track_id,
        creation_date,
        true as is_creator,
        false as is_liker
    from playable_jams
),

likers as (
    select
        likes.user_id,
        playable_jams.track_id,
        playable_jams.creation_date,
        false as is_creator,
        true as is_liker
    from likes
    inner join playable_jams on likes.jam_id = playable_jams.jam_id
),

events as (
    select * from creators
    union all
    select * from likers
)

select
    user_id,
    track_id,
    bool_or(is_creator) as is_creator,
    bool_or(is_liker) as is_liker,
    count(*) filter (where is_creator) as n_jams,
    count(*) filter (where is_liker) as n_likes,
    min(creation_date) as first_jam_date
from events
group by user_id, track_id

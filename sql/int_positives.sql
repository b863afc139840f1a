with playable_jams as (
    select
        jam_id,
        user_id,
        track_id,
        creation_date
    from int_jams_checked
    where reject_reason is null and track_id is not null
),

accepted_likes as (
    select
        user_id,
        jam_id
    from int_likes_checked
    where reject_reason is null
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
        accepted_likes.user_id,
        playable_jams.track_id,
        playable_jams.creation_date,
        false as is_creator,
        true as is_liker
    from accepted_likes
    inner join playable_jams on accepted_likes.jam_id = playable_jams.jam_id
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

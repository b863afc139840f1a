-- The temporal protocol's negatives, drawn like negatives.sql against the TRAIN positives
-- of splits_temporal only (what happened before the time cut), for users with one.
with catalogue as (
    select
        track_id,
        row_number() over (order by track_id) - 1 as track_index
    from tracks
),

catalogue_size as (
    select count(*) as n_tracks from catalogue
),

train_positives as (
    select
        user_id,
        track_id
    from splits_temporal
    where split = 'train'
),

users as (
    select distinct user_id from train_positives
),

draws as (
    select
        users.user_id,
        draw.range as draw,
        hash('negatives', getvariable('seed'), users.user_id, draw.range) % catalogue_size.n_tracks as track_index
    from users
    cross join range(3 * getvariable('n_negatives')) as draw
    cross join catalogue_size
),

candidates as (
    select
        draws.user_id,
        catalogue.track_id,
        min(draws.draw) as draw
    from draws
    inner join catalogue on draws.track_index = catalogue.track_index
    anti join train_positives
        on draws.user_id = train_positives.user_id and catalogue.track_id = train_positives.track_id
    group by draws.user_id, catalogue.track_id
)

select
    user_id,
    track_id
from candidates
qualify row_number() over (partition by user_id order by draw) <= getvariable('n_negatives')

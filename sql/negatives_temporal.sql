-- The temporal protocol's negatives, drawn like negatives.sql against the TRAIN positives
-- of splits_temporal only (what happened before the time cut), for users with one.
with catalogue as (
    select
        track_id,
        row_number() over (order by track_id) - 1 as track_index
    from tracks
),

catalogue_size as (
    -- unsigned like hash(), so the draw's modulo stays in 64-bit arithmetic
    select count(*)::ubigint as n_tracks from catalogue
),

train_positives as (
    select
        user_id,
        track_id
    from splits_temporal
    where split = 'train'
),

train_users as (
    select distinct user_id from train_positives
),

users as (
    select
        user_id,
        row_number() over (order by user_id) as user_key
    from train_users
),

-- The sampling below works on integer keys (the user's row here, the track's index in
-- the catalogue): grouping and anti-joining 6M draws on two 32-character strings cost
-- twice as long. The string ids only pick the draws (the hash) and come back at the end.
train_keys as (
    select
        users.user_key,
        catalogue.track_index
    from train_positives
    inner join users on train_positives.user_id = users.user_id
    inner join catalogue on train_positives.track_id = catalogue.track_id
),

draws as (
    select
        users.user_key,
        draw.range as draw,
        hash('negatives', getvariable('seed'), users.user_id, draw.range) % catalogue_size.n_tracks as track_index
    from users
    cross join range(3 * getvariable('n_negatives')) as draw
    cross join catalogue_size
),

candidates as (
    select
        draws.user_key,
        draws.track_index,
        min(draws.draw) as draw
    from draws
    anti join train_keys
        on draws.user_key = train_keys.user_key and draws.track_index = train_keys.track_index
    group by draws.user_key, draws.track_index
),

picked as (
    select
        user_key,
        track_index
    from candidates
    qualify row_number() over (partition by user_key order by draw) <= getvariable('n_negatives')
)

select
    users.user_id,
    catalogue.track_id
from picked
inner join users on picked.user_key = users.user_key
inner join catalogue on picked.track_index = catalogue.track_index

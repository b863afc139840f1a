-- The temporal protocol: one global time cut. A positive's time is the earliest date of
-- the jams behind it (a creator's own jam; a liker's liked jam: a lower bound, likes.tsv
-- has no dates). Train: positives dated before the cut. Test: positives dated on or after
-- it, of users with a train positive. Users first seen after the cut are not evaluated.
with cut as (
    select
        coalesce(
            try_cast(getvariable('temporal_cut') as date),
            (select quantile_disc(jams.creation_date, 1 - getvariable('temporal_share')) from jams)
        ) as cut_date
),

positives as (
    select
        interactions.user_id,
        interactions.track_id,
        interactions.first_jam_date as positive_date,
        cut.cut_date,
        coalesce(interactions.first_jam_date < cut.cut_date, false) as before_cut
    from interactions
    cross join cut
),

train_users as (
    select distinct user_id
    from positives
    where before_cut
),

train_tracks as (
    select distinct track_id
    from positives
    where before_cut
)

select
    positives.user_id,
    positives.track_id,
    case
        when positives.before_cut then 'train'
        when train_users.user_id is not null then 'test'
        else 'new_user'
    end as split,
    positives.positive_date,
    positives.cut_date,
    train_tracks.track_id is null as new_track
from positives
left join train_users on positives.user_id = train_users.user_id
left join train_tracks on positives.track_id = train_tracks.track_id

with positives as (
    select * from int_positives
),

catalogue as (
    select track_id from tracks
)

-- The study's inner join: a positive counts only when its track has audio features.
select positives.*
from positives
semi join catalogue on positives.track_id = catalogue.track_id

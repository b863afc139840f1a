with positives as (
    select * from int_positives
),

catalogue as (
    select track_id from tracks
)

select positives.*
from positives
anti join catalogue on positives.track_id = catalogue.track_id

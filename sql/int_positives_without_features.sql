with positives as (
    select * from int_positives
),

catalogue as (
    select distinct track_id from int_tracks_checked
    where reject_reason is null
)

select positives.*
from positives
anti join catalogue on positives.track_id = catalogue.track_id

with checked as (
    select * from int_jams_checked
    where reject_reason is null
)

select
    jam_id,
    user_id,
    artist,
    title,
    creation_date,
    link,
    spotify_uri,
    track_id,
    uri_status,
    line_number as source_line
from checked

select
    jam_id,
    user_id,
    artist,
    title,
    -- as yyyymmdd: Great Expectations compares numbers column-wise, dates row by row
    year(creation_date) * 10000 + month(creation_date) * 100 + day(creation_date) as creation_yyyymmdd,
    track_id,
    uri_status,
    (track_id is not null) = (uri_status = 'track')
    and (track_id is null or spotify_uri = 'spotify:track:' || track_id) as check_track_id_from_uri
from jams

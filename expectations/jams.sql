select
    jam_id,
    user_id,
    artist,
    title,
    -- as yyyymmdd: Great Expectations compares numbers column-wise, dates row by row
    year(creation_date) * 10000 + month(creation_date) * 100 + day(creation_date) as creation_yyyymmdd,
    track_id,
    uri_status,
    -- the id's 64-bit hash for the uniqueness check: pandas finds repeats among integers
    -- in a fraction of the time it takes on 2M strings
    hash(jam_id) as jam_key,
    (track_id is not null) = (uri_status = 'track')
    and (track_id is null or spotify_uri = 'spotify:track:' || track_id) as check_track_id_from_uri
from jams

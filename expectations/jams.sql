select
    jam_id,
    user_id,
    artist,
    title,
    creation_date,
    spotify_uri,
    track_id,
    uri_status,
    count(*) over (partition by jam_id) = 1 as check_jam_id_unique,
    (track_id is not null) = (uri_status = 'track')
        and (track_id is null or spotify_uri = 'spotify:track:' || track_id) as check_track_id_from_uri
from jams

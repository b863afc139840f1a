select
    * exclude (artists, genres, album, release_date, source_variant),
    count(*) over (partition by track_id) = 1 as check_track_id_unique,
    len(artists) > 0 as check_has_artists
from tracks

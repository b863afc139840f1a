with accepted as (
    select * from int_tracks_checked
    where reject_reason is null
)

select
    track_id,
    arg_min(name, line_number) as name,
    arg_min(artists, line_number) as artists,
    arg_min(album, line_number) as album,
    max(popularity) as popularity,
    arg_min(danceability, line_number) as danceability,
    arg_min(energy, line_number) as energy,
    arg_min(key, line_number) as key,
    arg_min(loudness, line_number) as loudness,
    arg_min(mode, line_number) as mode,
    arg_min(speechiness, line_number) as speechiness,
    arg_min(acousticness, line_number) as acousticness,
    arg_min(instrumentalness, line_number) as instrumentalness,
    arg_min(liveness, line_number) as liveness,
    arg_min(valence, line_number) as valence,
    arg_min(tempo, line_number) as tempo,
    arg_min(duration_ms, line_number) as duration_ms,
    arg_min(time_signature, line_number) as time_signature,
    arg_min(explicit, line_number) as explicit,
    arg_min(release_date, line_number) as release_date,
    arg_min(release_year, line_number) as release_year,
    coalesce(list(distinct genre order by genre) filter (where genre is not null), []) as genres,
    arg_min(variant, line_number) as source_variant,
    min(line_number) as source_line,
    count(*) as n_source_lines
from accepted
group by track_id

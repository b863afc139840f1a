with raw as (
    select * from raw_tracks
),

typed as (
    select
        line_number,
        variant,
        nullif(trim(track_id), '') as track_id,
        nullif(name, '') as name,
        case artists_format
            -- Python list text: ['A', 'B'], or ["Guns N' Roses"] when a name holds a quote.
            when 'list'
                then
                    list_transform(
                        regexp_extract_all(artists, '''(?:[^''\\]|\\.)*''|"(?:[^"\\]|\\.)*"'),
                        lambda quoted: replace(replace(replace(quoted[2:-2], '\''', ''''), '\"', '"'), '\\\\', '\\')
                    )
            when 'semicolon' then string_split(artists, ';')
            else [artists]
        end as artists,
        nullif(album, '') as album,
        popularity as popularity_text,
        try_cast(popularity as integer) as popularity,
        duration_ms as duration_text,
        try_cast(try_cast(duration_ms as double) as bigint) as duration_ms,
        case lower(explicit)
            when 'true' then true when '1' then true
            when 'false' then false when '0' then false
        end as explicit,
        explicit as explicit_text,
        nullif(release_date, '') as release_date,
        coalesce(try_cast(year as integer), try_cast(left(release_date, 4) as integer)) as release_year,
        nullif(genre, '') as genre,
        try_cast(danceability as double) as danceability,
        try_cast(energy as double) as energy,
        try_cast(speechiness as double) as speechiness,
        try_cast(acousticness as double) as acousticness,
        try_cast(instrumentalness as double) as instrumentalness,
        try_cast(liveness as double) as liveness,
        try_cast(valence as double) as valence,
        try_cast(loudness as double) as loudness,
        try_cast(tempo as double) as tempo,
        -- SpotifyFeatures.csv writes key as a pitch class letter and mode as Major/Minor.
        coalesce(
            try_cast(key as integer),
            list_position(['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'A#', 'B'], key) - 1
        ) as key,
        case mode when 'Major' then 1 when 'Minor' then 0 else try_cast(mode as integer) end as mode,
        -- ... and time_signature as 4/4.
        try_cast(split_part(time_signature, '/', 1) as integer) as time_signature,
        [
            danceability, energy, speechiness, acousticness, instrumentalness, liveness, valence,
            loudness, tempo, key, mode
        ] as required_text,
        artists as artists_text,
        time_signature as time_signature_text
    from raw
),

judged as (
    select
        *,
        case
            when track_id is null then 'track_id is empty'
            when not is_track_id(track_id) then 'track_id is not 22 base62 characters'
            when list_contains(list_transform(required_text, lambda t: t is null or t = ''), true)
                then 'an audio feature is empty'
            when danceability is null then 'danceability is not a number'
            when energy is null then 'energy is not a number'
            when speechiness is null then 'speechiness is not a number'
            when acousticness is null then 'acousticness is not a number'
            when instrumentalness is null then 'instrumentalness is not a number'
            when liveness is null then 'liveness is not a number'
            when valence is null then 'valence is not a number'
            when loudness is null then 'loudness is not a number'
            when tempo is null then 'tempo is not a number'
            when key is null then 'key is not a pitch class'
            when mode is null then 'mode is not 0/1 or Major/Minor'
            -- A range reject names the column and the value, e.g. 'danceability 1.7 outside 0..1'.
            when danceability not between 0 and 1 then format('danceability {} outside 0..1', danceability)
            when energy not between 0 and 1 then format('energy {} outside 0..1', energy)
            when speechiness not between 0 and 1 then format('speechiness {} outside 0..1', speechiness)
            when acousticness not between 0 and 1 then format('acousticness {} outside 0..1', acousticness)
            when instrumentalness not between 0 and 1
                then format('instrumentalness {} outside 0..1', instrumentalness)
            when liveness not between 0 and 1 then format('liveness {} outside 0..1', liveness)
            when valence not between 0 and 1 then format('valence {} outside 0..1', valence)
            -- Spotify documents -60..0 dB; real files reach a few dB above 0.
            when loudness not between -80 and 10 then format('loudness {} outside -80..10 dB', loudness)
            when tempo not between 0 and 300 then format('tempo {} outside 0..300 BPM', tempo)
            when key not between 0 and 11 then format('key {} outside 0..11', key)
            when mode not in (0, 1) then format('mode {} is not 0 or 1', mode)
            when popularity_text is not null and popularity_text <> '' and popularity is null
                then 'popularity is not an integer'
            when popularity not between 0 and 100 then format('popularity {} outside 0..100', popularity)
            when duration_text is not null and duration_text <> '' and duration_ms is null
                then 'duration_ms is not a number'
            when duration_ms <= 0 then format('duration_ms {} is not positive', duration_ms)
            when time_signature_text is not null and time_signature_text <> '' and time_signature is null
                then 'time_signature is not a number'
            when time_signature not between 0 and 7
                then format('time_signature {} outside 0..7', time_signature)
            when explicit_text is not null and explicit_text <> '' and explicit is null
                then 'explicit is not a boolean'
            when artists_text is null or artists_text = '' or len(artists) = 0 then 'artists is empty'
            -- Text: no NUL bytes, and at most max_text_chars characters (sql/_macros.sql).
            when has_nul(name) then 'name holds a NUL byte'
            when has_nul(artists_text) then 'artists holds a NUL byte'
            when has_nul(album) then 'album holds a NUL byte'
            when has_nul(genre) then 'genre holds a NUL byte'
            when length(name) > max_text_chars()
                then format('name is {} characters long (at most {})', length(name), max_text_chars())
            when length(artists_text) > max_text_chars()
                then format('artists is {} characters long (at most {})', length(artists_text), max_text_chars())
            when length(album) > max_text_chars()
                then format('album is {} characters long (at most {})', length(album), max_text_chars())
        end as reject_reason
    from typed
)

select
    line_number,
    variant,
    track_id,
    name,
    artists,
    album,
    popularity,
    danceability,
    energy,
    key,
    loudness,
    mode,
    speechiness,
    acousticness,
    instrumentalness,
    liveness,
    valence,
    tempo,
    duration_ms,
    time_signature,
    explicit,
    release_date,
    release_year,
    genre,
    reject_reason
from judged

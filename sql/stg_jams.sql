with raw_lines as (
    select
        line_number,
        try(decode(raw_line)) as line
    from raw_jams
),

split as (
    select
        line_number,
        line,
        tsv_fields(line) as fields
    from raw_lines
),

typed as (
    select
        line_number,
        line,
        len(fields) as n_fields,
        nullif(fields[1], '') as jam_id,
        nullif(fields[2], '') as user_id,
        nullif(fields[3], '') as artist_raw,
        nullif(fields[4], '') as title_raw,
        nullif(fields[5], '') as creation_date_text,
        nullif(fields[6], '') as link,
        nullif(fields[7], '') as spotify_uri
    from split
),

judged as (
    select
        *,
        case
            when line is null then 'invalid UTF-8'
            when line = '' then 'empty line'
            when n_fields <> 7 then format('expected 7 tab-separated fields (found {})', n_fields)
            when not is_timj_id(jam_id) then 'jam_id is not 32 lowercase hex characters'
            when not is_timj_id(user_id) then 'user_id is not 32 lowercase hex characters'
            when
                not coalesce(regexp_full_match(creation_date_text, '\d{4}-\d{2}-\d{2}'), false)
                or try_cast(creation_date_text as date) is null
                then 'creation_date is not a YYYY-MM-DD date'
            -- TIMJ ran from 2011-08-26 until its archive on 2015-09-26.
            when creation_date_text::date not between date '2011-08-26' and date '2015-09-26'
                then 'creation_date outside 2011-08-26..2015-09-26'
            -- Text: no NUL bytes, and at most max_text_chars characters (sql/_macros.sql).
            when has_nul(artist_raw) then 'artist holds a NUL byte'
            when has_nul(title_raw) then 'title holds a NUL byte'
            when has_nul(line) then 'line holds a NUL byte'
            when length(artist_raw) > max_text_chars()
                then format('artist is {} characters long (at most {})', length(artist_raw), max_text_chars())
            when length(title_raw) > max_text_chars()
                then format('title is {} characters long (at most {})', length(title_raw), max_text_chars())
        end as reject_reason
    from typed
)

select
    line_number,
    jam_id,
    user_id,
    -- Every non-ASCII row of the dump is double-encoded UTF-8.
    case when has_non_ascii(artist_raw) then repair_text(artist_raw) else artist_raw end as artist,
    case when has_non_ascii(title_raw) then repair_text(title_raw) else title_raw end as title,
    try_cast(creation_date_text as date) as creation_date,
    link,
    spotify_uri,
    spotify_track_id(spotify_uri) as track_id,
    spotify_uri_status(spotify_uri) as uri_status,
    reject_reason
from judged

-- Temporary macros shared by the models (they are not stored in the warehouse).
create or replace temp macro is_timj_id(s) as coalesce(regexp_full_match(s, '[0-9a-f]{32}'), false);

create or replace temp macro is_track_id(s) as coalesce(regexp_full_match(s, '[0-9A-Za-z]{22}'), false);

-- TIMJ stores spotify:track:<22 base62>; anything else is not a playable track.
create or replace temp macro spotify_uri_status(uri) as case
    when uri is null then 'empty'
    when regexp_full_match(uri, 'spotify:track:[0-9A-Za-z]{22}') then 'track'
    when starts_with(uri, 'spotify:track:') then 'malformed_track'
    else 'not_track'
end;

create or replace temp macro spotify_track_id(uri) as
case when regexp_full_match(uri, 'spotify:track:[0-9A-Za-z]{22}') then substr(uri, 15) end;

-- More bytes than characters: the text holds non-ASCII characters.
create or replace temp macro has_non_ascii(s) as strlen(s) > length(s);

create or replace temp macro tsv_fields(line) as string_split(line, chr(9));

-- How a rejected line is shown: its text, or its bytes escaped when it is not UTF-8.
create or replace temp macro raw_text(raw_line) as coalesce(try(decode(raw_line)), raw_line::varchar);

-- Text fields (artist, title, name, artists, album) longer than this are rejected: real
-- ones stay under a few hundred characters; megabytes of text are a broken or hostile file.
create or replace temp macro max_text_chars() as 1000;

-- A NUL byte has no place in text (C tools stop reading there; it hides what follows).
create or replace temp macro has_nul(s) as coalesce(contains(s, chr(0)), false);

with raw_lines as (
    select
        line_number,
        try(decode(raw_line)) as line
    from raw_likes
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
        nullif(fields[1], '') as user_id,
        nullif(fields[2], '') as jam_id
    from split
)

select
    line_number,
    user_id,
    jam_id,
    case
        when line is null then 'invalid UTF-8'
        when line = '' then 'empty line'
        when n_fields <> 2 then format('expected 2 tab-separated fields (found {})', n_fields)
        when not is_timj_id(user_id) then 'user_id is not 32 lowercase hex characters'
        when not is_timj_id(jam_id) then 'jam_id is not 32 lowercase hex characters'
    end as reject_reason
from typed

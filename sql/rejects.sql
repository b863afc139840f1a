with jam_rejects as (
    select
        'jams.tsv' as source_file,
        checked.line_number,
        raw_text(raw_jams.raw_line) as raw_line,
        checked.reject_reason as reason
    from int_jams_checked as checked
    inner join raw_jams on checked.line_number = raw_jams.line_number
    where checked.reject_reason is not null
),

like_rejects as (
    select
        'likes.tsv' as source_file,
        checked.line_number,
        raw_text(raw_likes.raw_line) as raw_line,
        checked.reject_reason as reason
    from int_likes_checked as checked
    inner join raw_likes on checked.line_number = raw_likes.line_number
    where checked.reject_reason is not null
),

follower_rejects as (
    select
        'followers.tsv' as source_file,
        checked.line_number,
        raw_text(raw_followers.raw_line) as raw_line,
        checked.reject_reason as reason
    from int_followers_checked as checked
    inner join raw_followers on checked.line_number = raw_followers.line_number
    where checked.reject_reason is not null
),

track_rejects as (
    select
        getvariable('spotify_file') as source_file,
        checked.line_number,
        raw_text(raw_tracks_lines.raw_line) as raw_line,
        checked.reject_reason as reason
    from int_tracks_checked as checked
    inner join raw_tracks_lines on checked.line_number = raw_tracks_lines.line_number
    where checked.reject_reason is not null
),

unreadable_track_records as (
    select
        getvariable('spotify_file') as source_file,
        line_number,
        raw_line,
        reason
    from raw_tracks_unreadable
)

select * from jam_rejects
union all
select * from like_rejects
union all
select * from follower_rejects
union all
select * from track_rejects
union all
select * from unreadable_track_records

with staged as (
    select
        *,
        struct_pack(
            danceability, energy, key, loudness, mode, speechiness, acousticness,
            instrumentalness, liveness, valence, tempo, duration_ms, time_signature
        ) as audio
    from stg_tracks
),

first_rows as (
    select
        track_id,
        min(line_number) as first_line,
        arg_min(audio, line_number) as first_audio
    from staged
    where reject_reason is null
    group by track_id
)

select
    staged.* exclude (audio, reject_reason),  -- noqa: RF02
    coalesce(
        staged.reject_reason,
        -- A repeat with the same audio features is the same track listed again (once
        -- per genre in SpotifyFeatures.csv): it is merged, not rejected.
        case
            when staged.line_number > first_rows.first_line and staged.audio <> first_rows.first_audio
                then format('duplicate track_id with different audio features (kept line {})', first_rows.first_line)
        end
    ) as reject_reason
from staged
left join first_rows
    on staged.track_id = first_rows.track_id and staged.reject_reason is null

select
    recorded_at,
    build_id,
    run_id,
    flow,
    stage,
    model,
    seconds,
    peak_rss_gb,
    rows,
    run_id is null or model is not null as check_run_stage_names_its_model
from timings

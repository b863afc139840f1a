-- One row per run, protocol, split, metric and cutoff: the per-user values' mean beside the
-- metrics row it must equal (user_metrics is large; these aggregates are what is checked).
with long_values as (
    select
        run_id,
        protocol,
        split,
        user_id,
        'hr' as metric,
        5 as k,
        hr_at_5 as value,
        rank
    from user_metrics
    union all
    select
        run_id,
        protocol,
        split,
        user_id,
        'hr' as metric,
        10 as k,
        hr_at_10 as value,
        rank
    from user_metrics
    union all
    select
        run_id,
        protocol,
        split,
        user_id,
        'hr' as metric,
        20 as k,
        hr_at_20 as value,
        rank
    from user_metrics
    union all
    select
        run_id,
        protocol,
        split,
        user_id,
        'ndcg' as metric,
        5 as k,
        ndcg_at_5 as value,
        rank
    from user_metrics
    union all
    select
        run_id,
        protocol,
        split,
        user_id,
        'ndcg' as metric,
        10 as k,
        ndcg_at_10 as value,
        rank
    from user_metrics
    union all
    select
        run_id,
        protocol,
        split,
        user_id,
        'ndcg' as metric,
        20 as k,
        ndcg_at_20 as value,
        rank
    from user_metrics
    union all
    select
        run_id,
        protocol,
        split,
        user_id,
        'mrr' as metric,
        null as k,
        rr as value,
        rank
    from user_metrics
),

aggregated as (
    select
        run_id,
        protocol,
        split,
        metric,
        k,
        avg(value) as user_mean,
        count(*) as n_rows,
        count(distinct user_id) as n_distinct_users,
        min(value) as min_value,
        max(value) as max_value,
        min(rank) as min_rank
    from long_values
    group by run_id, protocol, split, metric, k
)

select
    aggregated.run_id,
    aggregated.protocol,
    aggregated.split,
    aggregated.metric,
    aggregated.k,
    aggregated.user_mean,
    metrics.value as metrics_value,
    metrics.value is not null as check_has_metrics_row,
    coalesce(abs(aggregated.user_mean - metrics.value) <= 1e-9, false) as check_mean_equals_metrics,
    coalesce(aggregated.n_rows = metrics.n_users, false) as check_users_equal_metrics,
    aggregated.n_rows = aggregated.n_distinct_users as check_one_row_per_user,
    aggregated.min_value >= 0 and aggregated.max_value <= 1 as check_values_in_0_1,
    aggregated.min_rank >= 1 as check_ranks_from_1
from aggregated
left join metrics
    on
        aggregated.run_id = metrics.run_id
        and aggregated.protocol = metrics.protocol
        and aggregated.split = metrics.split
        and aggregated.metric = metrics.metric
        and aggregated.k is not distinct from metrics.k

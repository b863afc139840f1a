select
    *,
    -- HR, NDCG, MRR and coverage are shares; novelty (bits) and percentiles are not
    case
        when metric in ('hr', 'ndcg', 'mrr', 'coverage', 'overlap') or starts_with(metric, 'ndcg')
            then value
    end as share_value
from metrics

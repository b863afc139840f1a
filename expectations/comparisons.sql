select
    comparison_id,
    build_id,
    protocol,
    split,
    model_a,
    model_b,
    n_users,
    difference,
    p_value,
    p_holm,
    model_a != model_b as check_models_differ,
    p_holm >= p_value - 1e-12 as check_holm_at_least_p,
    ci_low <= difference + 1e-12 and difference <= ci_high + 1e-12 as check_interval_holds_difference,
    abs(difference - (mean_a - mean_b)) <= 1e-9 as check_difference_is_mean_a_minus_b,
    significant = (p_holm < alpha) as check_significant_is_holm_below_alpha
from comparisons

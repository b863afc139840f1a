with staged as (
    select * from stg_jams
),

repeated_ids as (
    select
        jam_id,
        min(line_number) as first_line
    from staged
    where reject_reason is null
    group by jam_id
    having count(*) > 1
)

select
    staged.* exclude (reject_reason),
    coalesce(
        staged.reject_reason,
        case
            when staged.line_number > repeated_ids.first_line
                then format('duplicate jam_id (first on line {})', repeated_ids.first_line)
        end
    ) as reject_reason
from staged
left join repeated_ids
    on staged.jam_id = repeated_ids.jam_id and staged.reject_reason is null

with staged as (
    select * from stg_likes
),

known_jams as (
    select jam_id from int_jams_checked
    where reject_reason is null
),

with_jam as (
    select
        staged.*,
        known_jams.jam_id is not null as has_jam
    from staged
    left join known_jams on staged.jam_id = known_jams.jam_id
),

-- Repeats are found in two steps: grouping 6M likes by a 64-bit hash of the pair is cheap,
-- and only the few pairs whose hash repeats are grouped on the two 32-character ids.
repeated_hashes as (
    select hash(user_id, jam_id) as pair_hash
    from with_jam
    where reject_reason is null and has_jam
    group by pair_hash
    having count(*) > 1
),

repeated_pairs as (
    select
        user_id,
        jam_id,
        min(line_number) as first_line
    from with_jam
    where
        reject_reason is null
        and has_jam
        and hash(user_id, jam_id) in (select repeated_hashes.pair_hash from repeated_hashes)
    group by user_id, jam_id
    having count(*) > 1
)

select
    with_jam.line_number,
    with_jam.user_id,
    with_jam.jam_id,
    case
        when with_jam.reject_reason is not null then with_jam.reject_reason
        when not with_jam.has_jam then 'jam_id is not in jams (unknown jam, or its line was rejected)'
        when with_jam.line_number > repeated_pairs.first_line
            then format('duplicate like (first on line {})', repeated_pairs.first_line)
    end as reject_reason
from with_jam
left join repeated_pairs
    on
        with_jam.user_id = repeated_pairs.user_id
        and with_jam.jam_id = repeated_pairs.jam_id
        and with_jam.reject_reason is null

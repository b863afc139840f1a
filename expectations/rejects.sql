select
    source_file,
    line_number,
    raw_line,
    reason,
    count(*) over (partition by source_file, line_number) = 1 as check_line_once
from rejects

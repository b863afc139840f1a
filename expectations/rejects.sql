select
    source_file,
    line_number,
    raw_line,
    reason,
    hash(source_file, line_number) as line_key
from rejects

"""The warehouse: the published DuckDB file, how it is written (copy-on-write, locks),
the tables jamrec writes about itself (history, migrations, views) and `jamrec sql`.

Every other stage depends on this package; it depends on none of them.
"""

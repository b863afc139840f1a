"""jamrec: a music recommender built as a data-engineering pipeline.

The package holds everything that does work; ``flows/`` wires it into Prefect and
``jamrec.cli`` exposes the same functions on the command line.
"""

__version__ = "0.1.0"

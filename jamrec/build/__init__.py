"""The build stage: raw readers, the SQL transforms, the quality gate and publishing.

``pipeline.run_build`` runs every stage in order (``jamrec etl``); the ``build-warehouse``
flow runs the same stage functions as tasks. Depends only on the warehouse package.
"""

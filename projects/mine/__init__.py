"""Mining the inference log for rows worth a label (docs/design/operation-vacation.md, section 4).

* ``slices``   -- SliceLine-style slice search with a test and Benjamini–Hochberg over every slice.
* ``reasons``  -- one ranking per reason: flags, slices, low confidence, disagreement, high loss.
* ``queue``    -- the budget shared across the reasons, each row once with every reason it has.
* ``feedback`` -- the feedback API's revisions as one row per request id, joined to a window.
* ``core``     -- ``mine_window``: all of the above on one window, no MLflow.
* ``shadow``   -- the candidate scored on logged pixels (both engines).
* ``spark_engine`` -- the same queue on Spark, the window never held (``--engine spark``).
* ``charts``, ``run`` -- the job's charts, and its log/registry/feedback/MLflow side.
* ``python -m projects.mine --help`` (``mlflow run . -e mine``) -- the entry point.
"""

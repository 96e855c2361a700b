"""Curation: labelled queue rows become training data and hard cases (design doc, section 5).

* ``core``  -- the newest labels joined onto a queue, the rows turned into the base training set's
  layout, duplicates dropped, the hard cases picked: pure pandas, no files, no MLflow.
* ``run``   -- the queue, the base version, the feedback, the new versions on disk, the hard-case
  set registered through the gate, and the MLflow run.
* ``python -m projects.curate --help`` (``mlflow run . -e curate``) -- the entry point.
"""

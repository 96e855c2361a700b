"""What a logged model's output means to the rest of the pipeline: the names, in one place.

A model that returns a DataFrame with ``p_<class>`` columns gives its class probabilities there
(the prefix is the inference log's, ``registry_hooks.inference_records``),
in class-index order (the serving wrapper, ``projects.serving``, does; any pyfunc model may). A
model that declares the ``log_inference`` param writes each call to the inference log unless told
``false``: evaluation, verification and drift score data sets, not traffic, so they pass false.
Plain pandas and MLflow metadata: the generic evaluator imports this without torch.
"""

from __future__ import annotations

import pandas as pd

from registry_hooks.inference_records import PROBABILITY_PREFIX, probability_columns

__all__ = ["PROBABILITY_PREFIX", "LOG_PARAM", "probability_columns", "probabilities", "scoring_params"]

LOG_PARAM = "log_inference"


def probabilities(output):
    """A model's output as its class probabilities: a frame's ``p_<class>`` columns when it has
    them, else the output as it is (a matrix, labels, regression values)."""
    if isinstance(output, pd.DataFrame) and (columns := probability_columns(output.columns)):
        return output[columns]
    return output


def scoring_params(model) -> dict[str, bool] | None:
    """The params that keep a pyfunc ``model`` from logging a data set as traffic (None when it
    declares no such param: passing an undeclared param makes MLflow warn on every call)."""
    metadata = getattr(model, "metadata", None)
    schema = metadata.get_params_schema() if metadata is not None else None
    declared = schema is not None and LOG_PARAM in {spec.name for spec in schema.params}
    return {LOG_PARAM: False} if declared else None

"""The candidate scored in the shadow on logged pixels: what the disagreement reason compares.

One function for both engines: the local engine calls it on the window's rows with pixels, the
Spark engine on each partition's (``projects.mine.spark_engine``), so a row gets the same
``prediction`` and ``p_<class>`` from the same model code either way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from projects.served import scoring_params
from registry_hooks.inference_records import REQUEST_ID

PIXELS = "pixels"
SCORING_CHUNK = 4096  # rows per shadow predict call: bounds the pixel frame (4096 x 3072 bytes)


def with_pixels(window: pd.DataFrame) -> pd.DataFrame:
    """The rows whose pixels the log kept (``GATEKEEPER_LOG_INPUTS=full``)."""
    return window[window[PIXELS].notna()] if PIXELS in window.columns else window.iloc[:0]


def score(model, rows: pd.DataFrame) -> pd.DataFrame:
    """The pyfunc ``model``'s output on ``rows``' pixels, chunk by chunk, with their request ids;
    scored as a model call, never logged as traffic."""
    from projects.scenes import PIXEL_COLUMNS

    params = scoring_params(model)
    scored = []
    for start in range(0, len(rows), SCORING_CHUNK):
        chunk = rows.iloc[start:start + SCORING_CHUNK]
        pixels = np.frombuffer(b"".join(chunk[PIXELS]), dtype=np.uint8).reshape(len(chunk), -1)
        output = model.predict(pd.DataFrame(pixels, columns=PIXEL_COLUMNS[:pixels.shape[1]]), params=params)
        scored.append(output.drop(columns=[REQUEST_ID], errors="ignore").assign(**{REQUEST_ID: chunk[REQUEST_ID].to_numpy()}))
    return pd.concat(scored, ignore_index=True)

"""Human feedback as the miner reads it: one row per request id, the newest revision.

Why one small module: the feedback API (``GatekeeperClient.feedback``, design section 3) returns
a list of revisions; everything the miner needs from it is the newest label and flag per request,
joined onto the window. Should the API's shape change, ``frame`` is the one place to adapt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from registry_hooks.feedback import FLAGS
from registry_hooks.inference_records import REQUEST_ID

COLUMNS = [REQUEST_ID, "label", "flag", "note"]


def frame(items: Iterable[Mapping]) -> pd.DataFrame:
    """The API's revisions (dicts with request_id, label, flag, note, revision, ...) as
    ``COLUMNS``, keeping each request id's highest revision (a correction wins)."""
    table = pd.DataFrame(list(items))
    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    table = table.reindex(columns=[*COLUMNS, "revision"])
    table["revision"] = pd.to_numeric(table["revision"]).fillna(0)
    newest = table.sort_values("revision", kind="stable").drop_duplicates(REQUEST_ID, keep="last")
    return newest[COLUMNS].astype(object).where(newest[COLUMNS].notna(), None).reset_index(drop=True)


def attach(window: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """``window`` with ``label``, ``flag`` and ``note`` from ``feedback`` (None where a request
    has none), row order and index kept. A flag other than ``FLAGS`` is an error, not ignored."""
    unknown = set(feedback["flag"].dropna()) - set(FLAGS)
    if unknown:
        raise ValueError(f"feedback flags must be one of {FLAGS}, got {sorted(unknown)}")
    by_id = feedback.drop_duplicates(REQUEST_ID, keep="last").set_index(REQUEST_ID)
    joined = window.drop(columns=[c for c in COLUMNS[1:] if c in window.columns]).copy()
    for column in COLUMNS[1:]:
        values = by_id[column].reindex(window[REQUEST_ID]).to_numpy(dtype=object)
        joined[column] = pd.Series(values, index=window.index, dtype=object).where(pd.notna(values), None)
    return joined

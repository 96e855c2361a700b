"""One labelling queue curated against one base training set: pure pandas, no files, no MLflow.

Why apart from the job: which rows enter the next training set decides what the next model
learns, so every rule here is tested on constructed queues (``tests/unit/test_curate.py``);
``projects.curate.run`` reads the queue, the base and the feedback and writes what comes out.

The rules, in the order a queue row meets them (a row is counted once, at the first it fails):

1. **labelled** -- the newest feedback revision per request id wins, whether fetched now (labels
   arrive after mining) or attached when the queue was mined; a newest revision that cleared the
   label leaves the row unlabelled;
2. **pixels** -- only a row whose log kept its 3,072 pixel bytes (``GATEKEEPER_LOG_INPUTS=full``)
   can become a training row;
3. **new** -- a row whose pixels or request id are in the base already, or earlier in the queue,
   is a duplicate: an image added twice would weigh twice in training.

A new row takes the base's columns and dtypes exactly, so content hashing and training treat it
like any generated row: ``row_id`` is the request id, ``label`` the class index, and the ``img_*``
summaries are recomputed from the pixels as ``projects.scenes.generate`` computes them (they then
describe exactly these pixels, whatever a caller sent). New rows are sorted by ``row_id``: the
same labelled rows give the same table, hence the same content hash, in whatever order they came.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from projects.datasets import DataError
from projects.mine import feedback
from projects.mine.queue import reason_counts
from projects.mine.reasons import SLICE
from projects.mine.shadow import PIXELS
from projects.scenes import CLASS_NAMES, N_PIXELS, PIXEL_COLUMNS, SUMMARY_COLUMNS, pixels, summary_features
from registry_hooks.inference_records import REQUEST_ID
from registry_hooks.names import normalise

ROW_ID = "row_id"
LABEL = "label"
CARRIED = ("weather", "light")  # metadata the log kept, carried into the training row as it is
MINED_REVISION = -1  # feedback attached when the queue was mined: older than any revision fetched since
_CLASS_BY_KEY = {normalise(name): index for index, name in enumerate(CLASS_NAMES)}


@dataclass(frozen=True)
class Curated:
    """What one queue adds to one base."""

    table: pd.DataFrame  # the base followed by ``added`` (the base itself when nothing is new)
    added: pd.DataFrame  # new training rows in the base's layout, sorted by row_id
    picked: pd.DataFrame  # the queue rows of ``added``, same order: their reasons, slices, scores
    hard_cases: pd.DataFrame  # labelled rows picked for a failing slice (base layout), new or not
    hard_slices: dict[str, int]  # the slices they were picked from, with their rows
    labelled: int  # labelled rows with pixels, each image once
    skipped: dict[str, int]  # unlabelled, no_pixels, duplicate

    def summary(self) -> dict:
        """What was added and why, for the manifest: rows per reason, per label and per slice."""
        slices = self.picked["slice"] if "slice" in self.picked.columns else pd.Series(dtype=object)
        return {
            "rows": len(self.added),
            "by_reason": reason_counts(self.picked),
            "by_label": _tally(CLASS_NAMES[i] for i in self.added[LABEL]),
            "by_slice": _tally(s for s in slices if s),
        }


def curate(queue: pd.DataFrame, base: pd.DataFrame, items: Iterable[Mapping] | None = None) -> Curated:
    """``queue`` (a ``mine`` queue) curated against ``base`` (a scenes table); ``items``: feedback
    revisions fetched now (dicts with request_id, label, flag, note, optionally revision), or None."""
    if queue.empty:
        nothing = base.iloc[:0]
        return Curated(base, nothing, queue, nothing, {}, 0, {"unlabelled": 0, "no_pixels": 0, "duplicate": 0})
    queue = join_feedback(queue, items or [])
    labelled = queue[queue[LABEL].notna()]
    with_pixels = labelled[_has_pixels(labelled)]
    digests = pd.Series([hashlib.sha256(b).hexdigest() for b in with_pixels[PIXELS]], index=with_pixels.index,
                        dtype=object)
    first = ~digests.duplicated().to_numpy() & ~with_pixels[REQUEST_ID].duplicated().to_numpy()
    usable = with_pixels[first]
    rows = scene_rows(usable, like=base)
    new = ~known(rows, base, digests[first].to_numpy())
    order = np.argsort(rows[ROW_ID].to_numpy(dtype=str)[new], kind="stable")
    added = rows[new].iloc[order].reset_index(drop=True)
    picked = usable[new].iloc[order]
    table = pd.concat([base, added], ignore_index=True) if len(added) else base
    table.attrs = {}  # not the base's generated mix any more
    slice_rows = usable.get(f"reason_{SLICE}", pd.Series(False, index=usable.index)).fillna(False).astype(bool).to_numpy()
    hard = rows[slice_rows].sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    skipped = {"unlabelled": len(queue) - len(labelled), "no_pixels": len(labelled) - len(with_pixels),
               "duplicate": len(with_pixels) - int(new.sum())}
    return Curated(table, added, picked, hard, _tally(usable["slice"][slice_rows]) if slice_rows.any() else {},
                   len(usable), skipped)


def join_feedback(queue: pd.DataFrame, items: Iterable[Mapping]) -> pd.DataFrame:
    """``queue`` with the newest ``label``, ``flag`` and ``note`` per request id: the revisions in
    ``items`` are newer than what mining attached, so they win where they name a request."""
    mined = queue.reindex(columns=feedback.COLUMNS).assign(revision=MINED_REVISION).to_dict("records")
    return feedback.attach(queue, feedback.frame([*mined, *items]))


def scene_rows(rows: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """Labelled queue rows with pixels as training rows with exactly ``like``'s columns and dtypes."""
    chw = np.frombuffer(b"".join(rows[PIXELS]), dtype=np.uint8).reshape(len(rows), N_PIXELS)
    labels = class_indices(rows[LABEL])
    meta = pd.DataFrame({
        ROW_ID: rows[REQUEST_ID].to_numpy(dtype=object),
        LABEL: labels,
        "label_name": np.asarray(CLASS_NAMES, dtype=object)[labels],
        **{c: rows[c].to_numpy(dtype=object) if c in rows.columns else [None] * len(rows) for c in CARRIED},
    })
    table = pd.concat([meta, pd.DataFrame(summary_features(chw), columns=SUMMARY_COLUMNS),
                       pd.DataFrame(chw, columns=PIXEL_COLUMNS, copy=False)], axis=1)
    return conform(table, like)


def conform(table: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``like``'s columns, in its order and with its dtypes: a concatenation then
    hashes and trains like ``like`` itself; a column ``table`` cannot give is an error."""
    missing = [c for c in like.columns if c not in table.columns]
    if missing:
        raise DataError(f"the table to extend has {len(missing)} column(s) a queue row cannot give, e.g. {missing[:5]}")
    table = table[list(like.columns)]
    differ = {c: t for c, t in like.dtypes.items() if table[c].dtype != t}
    return (table.astype(differ) if differ else table).reset_index(drop=True)


def class_indices(labels: pd.Series) -> np.ndarray:
    """Class names (as the model spells them, compared normalised like the gate does) -> indices."""
    keys = [normalise(str(v)) for v in labels]
    unknown = sorted({str(v) for v, k in zip(labels, keys) if k not in _CLASS_BY_KEY})
    if unknown:
        raise DataError(f"label(s) {unknown[:5]} are not classes of the scenes task ({', '.join(CLASS_NAMES)})")
    return np.asarray([_CLASS_BY_KEY[k] for k in keys], dtype=np.int64)


def known(rows: pd.DataFrame, table: pd.DataFrame, digests: np.ndarray | None = None) -> np.ndarray:
    """True where a row of ``rows`` is in ``table`` already: the same pixels or the same row id
    (``digests``: the rows' pixel hashes, when known)."""
    if digests is None:
        digests = pixel_digests(rows)
    seen = np.isin(digests, pixel_digests(table))
    if ROW_ID in table.columns:
        seen |= rows[ROW_ID].isin(table[ROW_ID]).to_numpy()
    return seen


def pixel_digests(table: pd.DataFrame) -> np.ndarray:
    """SHA-256 of each row's pixels: the inference log's ``input_sha256`` of the same image."""
    matrix = np.ascontiguousarray(pixels(table))
    return np.asarray([hashlib.sha256(row).hexdigest() for row in matrix], dtype=object)


def extend(previous: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame | None:
    """``previous`` (a set's current rows; None: no set yet) followed by the ``rows`` it lacks,
    in its layout; None when it lacks none (a set registered again unchanged is no new version)."""
    if previous is None:
        return rows if len(rows) else None
    fresh = rows[~known(rows, previous)]
    if fresh.empty:
        return None
    table = pd.concat([previous, conform(fresh, previous)], ignore_index=True)
    table.attrs = {}
    return table


def _has_pixels(rows: pd.DataFrame) -> np.ndarray:
    if PIXELS not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return np.asarray([isinstance(b, (bytes, bytearray)) and len(b) == N_PIXELS for b in rows[PIXELS]], dtype=bool)


def _tally(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))

"""The curation job's outside world: the queue, the base version, feedback, new versions, the gate, MLflow.

``curate`` reads a queue folder written by ``mine`` (``<queue>/{queue.parquet,manifest.json}``)
and a base training-set version, fetches the labels given since mining (from the gate at the
tracking URI for the queue's window, from a file, or none), curates (``projects.curate.core``) and
writes, when at least ``min_labels`` labelled rows with pixels came back:

* the base plus the new rows as a new training-set version ``<out>/<content hash>/`` (the
  ``save_version`` folder), its manifest's ``curation`` section naming what was added (rows per
  reason, label and slice), what was skipped and why, and where it came from: the queue's content
  hash, folder and window, the feedback source, the base's content hash;
* the labelled rows of failing slices, appended to the hard-case evaluation set's current version,
  as ``<out>/../sets/<content hash>/`` registered through the gate (``gatekeeper_cli.sets.register``)
  as the set's next version: a failure found once is tested on every later candidate.

Then one MLflow run (``curate``): params, counts as metrics, the base, the queue, the training set
and the hard-case set as dataset inputs (contexts ``base``, ``queue``, ``training``,
``hard_cases``: lineage in MLflow's UI), the manifest as ``data/manifest.json``, the version as the
``gatekeeper.dataset.version`` tag (also on the ``mlflow run`` project's run, as ``scenes`` does).

Why nothing is written below ``min_labels``: a version per handful of labels would retrain for
noise. A version whose content hash exists is kept as it is (its manifest names the first queue
that made it), so re-running on the same inputs changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from projects.datasets import DATA_FILE, MANIFEST_FILE, load_table, log_dataset_input, version_data_path
from projects.mine.shadow import PIXELS
from projects.run_scope import child_run
from projects.scenes import load_version, save_version
from registry_hooks.contract import TAG_DATASET_VERSION

from . import core
from .core import Curated

NONE = "none"
SETS_DIR = "sets"  # hard-case set versions: <out>/../sets/<content hash>/
QUEUE_FILE, QUEUE_MANIFEST = "queue.parquet", "manifest.json"
SCHEMA_SAMPLE = 100  # rows of a scenes table MLflow infers a dataset input's schema from


class CurateError(RuntimeError):
    """Curation cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class CurateRequest:
    """What the entry point asked for, parsed (see ``projects.curate.__main__``)."""

    queue: Path  # a queue folder written by mine
    base: Path  # a training-set version folder
    registered_model: str
    feedback: str  # "" (the gate at the tracking URI), "none", or a CSV/Parquet file
    out: Path
    hard_cases: str  # the evaluation set's name, or "none"
    min_labels: int


@dataclass(frozen=True)
class HardCases:
    """The hard-case set version registered: the gate's record of it, and what it holds."""

    registered: dict  # name, version, source, content_hash, n_rows, ... (GatekeeperClient.register_set)
    added: int
    folder: Path
    table: pd.DataFrame


@dataclass(frozen=True)
class CurateOutcome:
    run_id: str
    path: Path  # the training-set version to use next: the new one, or the base when nothing is new
    manifest: dict
    changed: bool  # False: nothing new, ``path`` is the base
    curated: Curated
    hard_cases: HardCases | None
    notes: list[str]

    @property
    def rows_added(self) -> int:
        """Rows the new version adds to the base (0 when no version was written)."""
        return len(self.curated.added) if self.changed else 0


def curate(request: CurateRequest) -> CurateOutcome:
    """Run the whole job (see the module docstring)."""
    notes: list[str] = []
    queue, queue_manifest = read_queue(request.queue)
    if queue_manifest.get("registered_model") not in (None, request.registered_model):
        raise CurateError(f"the queue was mined for {queue_manifest['registered_model']!r}, "
                          f"not {request.registered_model!r}: pass registered_model={queue_manifest['registered_model']}")
    base, base_manifest = load_version(request.base)
    base_dir = version_data_path(request.base).parent
    items = _feedback(request, queue_manifest, notes)
    curated = core.curate(queue, base, items)
    origin = _origin(request, queue_manifest, base_manifest, base_dir, len(items))
    path, manifest, hard = base_dir, base_manifest, None
    if curated.labelled < request.min_labels:
        notes.append(f"{curated.labelled} labelled row(s) with pixels, fewer than min_labels={request.min_labels}: "
                     "nothing new is written")
    else:
        if curated.added.empty:
            notes.append("nothing new: every labelled row is in the base already")
        else:
            path, manifest = save_with_origin(curated.table, request.out, {**origin, **_what(curated, request)})
        hard = _hard_cases(request, curated, origin, notes)
    if curated.skipped["no_pixels"]:
        notes.append(f"{curated.skipped['no_pixels']} labelled row(s) could not be added: the log kept no pixels "
                     "for them (GATEKEEPER_LOG_INPUTS=full keeps them)")
    changed = path != base_dir
    outcome = CurateOutcome("", path, manifest, changed, curated, hard, notes)
    run_id = _log_run(request, outcome, queue, curated.table if changed else base, (base_dir, base))
    _tag_project_run(manifest["content_hash"])
    return replace(outcome, run_id=run_id)


def read_queue(folder: Path) -> tuple[pd.DataFrame, dict]:
    """A queue folder's rows and manifest; a folder that is not one is a ``CurateError``."""
    try:
        manifest = json.loads((folder / QUEUE_MANIFEST).read_text())
        queue = pd.read_parquet(folder / QUEUE_FILE)
    except (OSError, ValueError) as exc:
        raise CurateError(f"{folder} is not a queue folder written by mine: {exc}") from exc
    return queue, manifest


def _feedback(request: CurateRequest, queue_manifest: dict, notes: list[str]) -> list[dict]:
    """Feedback revisions given on the queue's window, from the gate or a file; none with ``none``."""
    if request.feedback == NONE:
        notes.append("feedback not fetched (feedback=none): the labels attached when the queue was mined")
        return []
    if request.feedback:
        return load_table(request.feedback).to_dict("records")
    import mlflow

    from gatekeeper_cli.client import GatekeeperClient, GatekeeperError

    window = queue_manifest["window"]
    try:
        return GatekeeperClient(mlflow.get_tracking_uri()).feedback(
            request.registered_model, since=dt.datetime.fromisoformat(window["start"]),
            until=dt.datetime.fromisoformat(window["end"]))
    except GatekeeperError as exc:
        raise CurateError(f"cannot fetch feedback for {request.registered_model}: {exc} "
                          "(feedback=none uses the labels the queue was mined with)") from exc


def _origin(request: CurateRequest, queue_manifest: dict, base_manifest: dict, base_dir: Path, items: int) -> dict:
    """Where curated rows come from: the queue (and its window), the feedback, the base."""
    return {
        "queue": {"content_hash": queue_manifest.get("content_hash", request.queue.name),
                  "path": str(request.queue.resolve()), "registered_model": request.registered_model,
                  "window": queue_manifest.get("window"), "rows": queue_manifest.get("queue_rows")},
        "feedback": {"source": request.feedback or "gate", "items": items},
        "base": {"content_hash": base_manifest["content_hash"], "path": str(base_dir.resolve()),
                 "n": base_manifest.get("n")},
    }


def _what(curated: Curated, request: CurateRequest) -> dict:
    """What was added and what was not, and why (the manifest's half that is about rows)."""
    return {"added": curated.summary(), "skipped": curated.skipped, "labelled": curated.labelled,
            "min_labels": request.min_labels, "row_id": "the request id of the prediction the row was labelled on"}


def save_with_origin(table: pd.DataFrame, root: Path, curation: dict) -> tuple[Path, dict]:
    """``save_version``'s ``<root>/<content hash>/`` with ``curation`` in its manifest: written in a
    scratch folder under ``root`` and renamed into place (a reader never sees half a version); a
    version that exists already is kept as it is."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".curate-", dir=root))
    try:
        folder, manifest = save_version(table, scratch)
        target = root / folder.name
        if (target / MANIFEST_FILE).exists():
            return target, json.loads((target / MANIFEST_FILE).read_text())
        manifest = {**manifest, "curation": curation}
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        try:
            os.replace(folder, target)
        except OSError:  # another writer got there first with the same table
            if not (target / MANIFEST_FILE).exists():
                raise
        return target, manifest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _hard_cases(request: CurateRequest, curated: Curated, origin: dict, notes: list[str]) -> HardCases | None:
    """The hard-case set's next version (its current rows plus the new hard cases), registered
    through the gate; None when there is nothing to add or ``hard_cases=none``."""
    name = request.hard_cases
    if name == NONE:
        notes.append("hard_cases=none: no hard-case set registered")
        return None
    if curated.hard_cases.empty:
        notes.append(f"no labelled row of a failing slice: {name} is unchanged")
        return None
    import mlflow

    from gatekeeper_cli.client import GatekeeperClient, GatekeeperError
    from gatekeeper_cli.sets import register

    gate = GatekeeperClient(mlflow.get_tracking_uri())
    try:
        current = _current_set(gate, name)
        previous = load_table(current["source"]) if current else None
        table = core.extend(previous, curated.hard_cases)
        if table is None:
            notes.append(f"every hard case is in {name} v{current['version']} already")
            return None
        added = len(table) - (len(previous) if previous is not None else 0)
        slices = sorted(curated.hard_slices)
        folder, _ = save_with_origin(table, Path(request.out).parent / SETS_DIR, {
            **origin, "set": name, "previous": {k: current[k] for k in ("version", "content_hash")} if current else None,
            "added": {"rows": added, "from_slices": curated.hard_slices}})
        description = (f"curate: {added} hard case(s) from failing slices {', '.join(slices[:5])}"
                       f"{' …' if len(slices) > 5 else ''} (queue {origin['queue']['content_hash'][:12]})")
        registered = register(gate, name, str(folder / DATA_FILE), core.LABEL, description)
    except GatekeeperError as exc:
        raise CurateError(f"cannot register the hard-case set {name} through the gate: {exc} "
                          "(hard_cases=none skips it)") from exc
    notes.append(f"{added} hard case(s) added: {registered['name']} v{registered['version']} ({registered['n_rows']} rows)")
    return HardCases(registered, added, folder, table)


def _current_set(gate, name: str) -> dict | None:
    """The set's current version, or None when no set of that name is registered (404)."""
    from gatekeeper_cli.client import GatekeeperError

    try:
        return gate.set_version(name)
    except GatekeeperError as exc:
        if exc.status == 404:
            return None
        raise


def _log_run(request: CurateRequest, outcome: CurateOutcome, queue: pd.DataFrame, table: pd.DataFrame,
             base: tuple[Path, pd.DataFrame]) -> str:
    import mlflow

    curated, manifest, hard, (base_dir, base_table) = outcome.curated, outcome.manifest, outcome.hard_cases, base
    with child_run("curate", CurateError) as run:
        mlflow.log_params({"queue": request.queue.name, "base": base_dir.name, "registered_model": request.registered_model,
                           "feedback": request.feedback or "gate", "out": str(request.out),
                           "hard_cases": request.hard_cases, "min_labels": request.min_labels})
        mlflow.log_metrics({
            "queue_rows": len(queue), "labelled_rows": curated.labelled, "rows_added": outcome.rows_added,
            **{f"rows_skipped_{why}": n for why, n in curated.skipped.items()},
            "hard_cases_added": hard.added if hard else 0, "training_rows": manifest["n"]})
        mlflow.set_tag(TAG_DATASET_VERSION, manifest["content_hash"])
        mlflow.log_dict(manifest, "data/manifest.json")
        _log_inputs(request.queue, queue, (base_dir, base_table), (outcome.path, table), hard)
        return run.info.run_id


def _log_inputs(queue_dir: Path, queue: pd.DataFrame, base: tuple[Path, pd.DataFrame],
                training: tuple[Path, pd.DataFrame], hard: HardCases | None) -> None:
    """The lineage: base + queue -> training (and the hard-case set), as the run's dataset inputs.
    The queue is logged as ``mine`` logged it (same name and digest: one dataset in MLflow). The
    scenes tables go as their first ``SCHEMA_SAMPLE`` rows with the whole table's hash and size:
    MLflow's schema inference visits every cell (about 10 s for 8,000 rows of 3,084 columns)."""
    with warnings.catch_warnings():  # MLflow's guesses about a local file source and integer columns
        warnings.filterwarnings("ignore", message="(?s).*(interpreted in multiple ways|Inferred schema contains)")
        for context, (folder, table) in (("base", base), ("training", training)):
            log_dataset_input(table.head(SCHEMA_SAMPLE), source=str((folder / DATA_FILE).resolve()), context=context,
                              name=f"{context}-{folder.name[:12]}", digest=folder.name, n_rows=len(table))
        if not queue.empty:
            rows = queue.drop(columns=[PIXELS], errors="ignore")
            log_dataset_input(rows, source=str((queue_dir / QUEUE_FILE).resolve()), name=f"labelling-queue-{queue_dir.name[:12]}",
                              context="queue", digest=queue_dir.name, n_rows=len(rows))
        if hard:
            log_dataset_input(hard.table.head(SCHEMA_SAMPLE), source=hard.registered["source"], context="hard_cases",
                              name=f"{hard.registered['name']}-v{hard.registered['version']}", digest=hard.folder.name,
                              n_rows=len(hard.table))


def _tag_project_run(content_hash: str) -> None:
    """Under ``mlflow run`` the project's run names the training-set version too, as ``scenes`` does."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        from mlflow import MlflowClient

        MlflowClient().set_tag(run_id, TAG_DATASET_VERSION, content_hash)

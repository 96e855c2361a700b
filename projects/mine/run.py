"""The mining job's outside world: the log, the registry, the candidate, feedback, files, MLflow.

``mine`` reads a window of the inference log, finds the champion (``@champion``; its run id is
what each record's ``model_run_id`` holds) and the candidate, shadow-scores the candidate on the
rows whose pixels the log kept (``GATEKEEPER_LOG_INPUTS=full``), fetches the feedback given on
the window's predictions, mines the window (``projects.mine.core`` in this process, or
``projects.mine.spark_engine`` with ``engine="spark"``: the same queue) and writes the queue as a
versioned folder ``<out>/<content hash>/`` (``queue.parquet``, ``queue.csv``, ``manifest.json``),
then logs one MLflow run: params, metrics ``queue_rows``, ``window_rows``, ``reason_<name>_rows``,
one chart per reason, the queue files, and the queue as a dataset input (context
``labelling_queue``).

Why a folder named by content hash: the curation step (design section 5) turns labelled queue
rows into a training-set version and must name exactly which queue it came from; the same window,
feedback and seed give the same queue and so the same folder (written once, atomically),
whichever engine mined it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from projects.datasets import content_hash, load_table, log_dataset_input
from projects.run_scope import child_run
from registry_hooks.inference_records import REQUEST_ID, read_window, root_from_env

from . import charts, feedback, shadow
from .core import Mined, mine_window
from .queue import reason_counts
from .reasons import REASONS, SLICE
from .slices import SliceOptions

CHAMPION_ALIAS = "champion"
NONE = "none"
NO_PIXELS = "no row of the window kept its pixels (GATEKEEPER_LOG_INPUTS=full): the candidate was not scored"
QUEUE_FILES = ("queue.parquet", "queue.csv", "manifest.json")
DATASET_CONTEXT = "labelling_queue"


class MineError(RuntimeError):
    """Mining cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class MineRequest:
    """What the entry point asked for, parsed (see ``projects.mine.__main__``)."""

    registered_model: str
    end: dt.datetime
    window_days: float
    fraction: float
    candidate: str  # "" (the newest version newer than @champion), "none", or models:/NAME/VERSION or a version number
    feedback: str  # "" (the gate at the tracking URI), "none", or a CSV/Parquet file
    log: str  # "" (GATEKEEPER_INFERENCE_LOG)
    out: Path
    seed: int
    options: SliceOptions = field(default_factory=SliceOptions)
    selection: str = "reasons"  # or "random": the control arm (projects.mine.reasons.random_rows)
    engine: str = "local"  # or "spark" (projects.mine.spark_engine)
    spark_master: str = "local[*]"

    @property
    def start(self) -> dt.datetime:
        return self.end - dt.timedelta(days=self.window_days)


@dataclass(frozen=True)
class MineOutcome:
    run_id: str
    folder: Path
    mined: Mined
    notes: list[str]


def mine(request: MineRequest) -> MineOutcome:
    """Run the whole job (see the module docstring)."""
    from mlflow import MlflowClient

    notes: list[str] = []
    client = MlflowClient()
    champion = _champion(client, request.registered_model, notes)
    candidate_uri = _candidate_uri(client, request, champion, notes) if request.selection == "reasons" else None
    given = _feedback(request, notes)
    engine = _mine_on_spark if request.engine == "spark" else _mine_locally
    mined = engine(request, champion.run_id if champion else None, candidate_uri, given, notes)
    if not mined.window_rows:
        notes.insert(0, f"the log holds no records from {request.start.isoformat()} to {request.end.isoformat()}")
    manifest = _manifest(request, mined, champion, candidate_uri, len(given), notes)
    folder = write_queue(mined.queue, manifest, request.out)
    run_id = _log_run(request, mined, folder, candidate_uri)
    return MineOutcome(run_id, folder, mined, notes)


def _mine_locally(request: MineRequest, champion_run_id: str | None, candidate_uri: str | None, given: pd.DataFrame,
                  notes: list[str]) -> Mined:
    """The window read into pandas and mined here (``projects.mine.core``)."""
    window = read_window(request.start, request.end, root=request.log or None).to_pandas()
    scored = _shadow_scores(candidate_uri, window, notes) if candidate_uri and not window.empty else None
    if not window.empty:
        window = feedback.attach(window, given)
    return mine_window(window, champion_run_id=champion_run_id, candidate=scored, fraction=request.fraction,
                       options=request.options, seed=request.seed, selection=request.selection)


def _mine_on_spark(request: MineRequest, champion_run_id: str | None, candidate_uri: str | None, given: pd.DataFrame,
                   notes: list[str]) -> Mined:
    """The window mined by Spark on ``request.spark_master`` (``projects.mine.spark_engine``):
    the same queue, the window never read into this process."""
    from projects.spark_session import SparkUnavailable, session

    from . import spark_engine

    try:
        spark = session(request.spark_master, "mine")
    except SparkUnavailable as exc:
        raise MineError(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="gatekeeper-mine-") as work:
        candidate = _shipped_candidate(spark, candidate_uri, Path(work)) if candidate_uri else None
        job = spark_engine.Job(request.start, request.end, request.log or None, given, champion_run_id, candidate,
                               request.fraction, request.options, request.seed, request.selection, Path(work))
        mined, scored = spark_engine.mine(spark, job)
    if candidate_uri and mined.window_rows:
        notes.append(f"candidate {candidate_uri} scored in the shadow on {scored} row(s)" if scored else NO_PIXELS)
    return mined


def _shipped_candidate(spark, uri: str, work: Path) -> str:
    """The candidate's model downloaded once and handed to Spark's workers (``SparkContext.addFile``),
    under a name unique to this run (a long-lived session refuses a name twice)."""
    import uuid

    import mlflow.artifacts

    folder = work / f"candidate-{uuid.uuid4().hex}"
    path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder))
    spark.sparkContext.addFile(path, recursive=True)
    return path


def _champion(client, name: str, notes: list[str]):
    """The ``@champion`` version, or None (then slices are searched on every row, and said so)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as exc:
        notes.append(f"no @{CHAMPION_ALIAS} of {name} ({exc.error_code}): slices searched on every model's rows")
        return None


def _candidate_uri(client, request: MineRequest, champion, notes: list[str]) -> str | None:
    """``models:/NAME/VERSION`` to shadow-score, or None: by default the newest version newer
    than the champion (an older one is a past champion, not a candidate), the one named, or none."""
    if request.candidate == NONE:
        return None
    if request.candidate:
        if request.candidate.isdigit():
            return f"models:/{request.registered_model}/{request.candidate}"
        return request.candidate
    versions = client.search_model_versions(f"name = '{request.registered_model}'")
    floor = int(champion.version) if champion is not None else 0
    newer = sorted((int(v.version) for v in versions if int(v.version) > floor), reverse=True)
    if not newer:
        notes.append(f"{request.registered_model} has no version newer than the champion: no disagreement reason")
        return None
    return f"models:/{request.registered_model}/{newer[0]}"


def _shadow_scores(uri: str, window: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """The candidate's ``prediction`` and ``p_<class>`` per request id, on the rows whose pixels
    the log kept, scored without logging them as traffic."""
    import mlflow.pyfunc

    rows = shadow.with_pixels(window)
    if rows.empty:
        notes.append(NO_PIXELS)
        return None
    scored = shadow.score(mlflow.pyfunc.load_model(uri), rows)
    notes.append(f"candidate {uri} scored in the shadow on {len(rows)} row(s)")
    return scored


def _feedback(request: MineRequest, notes: list[str]) -> pd.DataFrame:
    """The feedback on the window's predictions: from the gate, from a file, or none."""
    if request.feedback == NONE:
        notes.append("feedback not fetched (feedback=none): no labels, flags or high-loss rows")
        return feedback.frame([])
    if request.feedback:
        return feedback.frame(load_table(request.feedback).to_dict("records"))
    import mlflow

    from gatekeeper_cli.client import GatekeeperClient, GatekeeperError

    try:
        items = GatekeeperClient(mlflow.get_tracking_uri()).feedback(request.registered_model, since=request.start,
                                                                      until=request.end)
    except GatekeeperError as exc:
        raise MineError(f"cannot fetch feedback for {request.registered_model}: {exc} (feedback=none mines without it)") from exc
    if not items:
        notes.append("no feedback on this window yet")
    return feedback.frame(items)


def _manifest(request: MineRequest, mined: Mined, champion, candidate_uri: str | None, n_feedback: int,
              notes: list[str]) -> dict:
    search = mined.search
    return {
        "registered_model": request.registered_model,
        "window": {"start": request.start.isoformat(), "end": request.end.isoformat(),
                   "log": request.log or root_from_env(), "rows": mined.window_rows, "champion_rows": mined.champion_rows},
        "champion": {"version": champion.version, "run_id": champion.run_id} if champion else None,
        "candidate": candidate_uri,
        "feedback": {"source": request.feedback or "gate", "requests": n_feedback},
        "budget": {"fraction": request.fraction, "rows": mined.budget},
        "seed": request.seed,
        "selection": request.selection,
        "engine": request.engine,
        "queue_rows": len(mined.queue),
        "reasons": {reason: reason_counts(mined.queue).get(reason, 0) for reason in REASONS},
        "slices": {"basis": search.basis, "rows": search.n_rows, "errors": search.n_errors, "tested": search.tested,
                   "uncertain_below": search.threshold, "min_support": request.options.min_support,
                   "q": request.options.q, "test": request.options.test,
                   "found": [s.to_dict() for s in search.slices]},
        "notes": notes,
    }


def write_queue(queue: pd.DataFrame, manifest: dict, out: Path) -> Path:
    """``<out>/<content hash>/`` with the three queue files, written under a temporary name and
    renamed (a reader never sees half a queue); an existing folder is kept as it is."""
    digest = content_hash(queue)
    target = Path(out) / digest
    if (target / "manifest.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=target.parent))
    try:
        queue.to_parquet(staging / "queue.parquet", index=False)
        queue.drop(columns=[shadow.PIXELS], errors="ignore").to_csv(staging / "queue.csv", index=False)
        (staging / "manifest.json").write_text(json.dumps({"content_hash": digest, **manifest}, indent=2, default=str) + "\n")
        try:
            os.replace(staging, target)
        except OSError:  # another writer got there first with the same queue
            if not (target / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _log_run(request: MineRequest, mined: Mined, folder: Path, candidate_uri: str | None) -> str:
    import mlflow

    with child_run("mine", MineError) as run:
        mlflow.log_params({"registered_model": request.registered_model, "window_start": request.start.isoformat(),
                           "window_end": request.end.isoformat(), "window_days": request.window_days,
                           "budget_fraction": request.fraction, "budget_rows": mined.budget,
                           "candidate": candidate_uri or NONE, "feedback": request.feedback or "gate",
                           "min_support": request.options.min_support, "seed": request.seed, "selection": request.selection,
                           "engine": request.engine,
                           "log": request.log or root_from_env(), "queue": folder.name})
        counts = reason_counts(mined.queue)
        mlflow.log_metrics({"queue_rows": len(mined.queue), "window_rows": mined.window_rows,
                            "slices_tested": mined.search.tested, "slices_found": len(mined.search.slices),
                            **{f"reason_{reason}_rows": counts.get(reason, 0) for reason in REASONS}})
        _log_charts(mined)
        for name in QUEUE_FILES:
            mlflow.log_artifact(str(folder / name), artifact_path="queue")
        if not mined.queue.empty:
            table = mined.queue.drop(columns=[shadow.PIXELS], errors="ignore")
            with warnings.catch_warnings():  # MLflow's guesses about a local file source and integer columns
                warnings.filterwarnings("ignore", message="(?s).*(interpreted in multiple ways|Inferred schema contains)")
                log_dataset_input(table, source=str((folder / "queue.parquet").resolve()), name=f"labelling-queue-{folder.name[:12]}",
                                  context=DATASET_CONTEXT, digest=folder.name, n_rows=len(table))
        return run.info.run_id


def _log_charts(mined: Mined) -> None:
    """One PNG per reason the queue was drawn by, and the slice search's, under ``charts/`` (the
    queue's index is the window's row labels)."""
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        for reason in [r for r in REASONS if r in mined.picks or r == SLICE]:
            path = Path(scratch) / f"reason_{reason}.png"
            if reason == SLICE:
                charts.slice_chart(mined.search, path)
            else:
                picks = mined.picks.get(reason, pd.DataFrame(columns=["score", "detail"]))
                charts.reason_chart(reason, picks, mined.queue.index, path, mined.ranked(reason))
            mlflow.log_artifact(str(path), artifact_path="charts")

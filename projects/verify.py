"""The verifier: re-score a secret sample of a registered set and compare with the logged outcomes.

``python -m projects.verify --db-uri URI --request ID`` verifies one request; ``--worker [--poll S]
[--once]`` polls for pending requests (``gatekeeper verify-worker``, or ``GATEKEEPER_VERIFIER=external``);
``--worker --parent-pid PID`` is the gate's daemon (``plugins.verifier_launch`` starts one per
server process): it imports what verification needs in the background as soon as it starts, takes
the requests the gate counted as started, and exits once its parent is gone and the queue is
empty. Every mode runs outside the server worker, which never imports torch, keeps the last
``SCORERS_KEPT`` models it loaded, and writes only one thing: its signed answer on the request row
(``registry_hooks.verification``).

One request, in order; the first step that does not hold decides:

1. the set version named by the request, re-hashed from its source (``eval_sets.describe_table``):
   a source that no longer holds the registered table is an *error* — nothing can be checked;
2. the evidence run's outcomes: their bytes must still have the hash the gate read (else *failed*:
   changed after logging), name the request's versions, and cover every (row id, label) of the
   set (``keys_digest``; else *failed*, with how many ids are missing, extra or relabelled);
3. the rows at ``verification.sample_rows`` positions, scored by the candidate and baseline
   versions loaded from the registry with evaluate's own ``Scorer`` (same input columns, same
   prediction / proba_label / score), compared with the logged values: labels and predictions
   exactly (except a near tie: the re-scored top two probabilities within ``PROBA_TOLERANCE``),
   probabilities within ``PROBA_TOLERANCE``. Any disagreement: *failed*, with the first rows.

Any exception finishes the request as *error* with the reason: a request is never left running by
a verifier that is still alive. Exit codes: 0 answered (whatever the answer), 1 nothing could be
recorded, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import os
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from registry_hooks import eval_sets, verification
from registry_hooks.contract import EVIDENCE_MANIFEST_PATH, EVIDENCE_OUTCOMES_PATH, STORE_URI_PREFIX, VERIFIER_MODULE
from registry_hooks.secret import server_secret
from registry_hooks.tables import iter_table, local_path
from registry_hooks.verification import PROBA_TOLERANCE, VALUE_RTOL, Claim

_FIELDS = ("prediction", "proba_label", "score")  # what the gate judges; loss it recomputes
SCORERS_KEPT = 4  # loaded models a verifier keeps: a candidate and its baseline, twice over
_scorers: OrderedDict[tuple, Any] = OrderedDict()
# What a verification imports, loaded by the daemon before its first request (torch when installed:
# a pt2 model's first load imports torch._dynamo, seconds of its own).
_WARM_MODULES = ("mlflow.pyfunc", "pandas", "pyarrow.ipc", "pyarrow.parquet", "plugins.evidence_source",
                 "registry_hooks.evidence", "projects.evaluate.core", "projects.evaluate.scoring")
_WARM_TORCH = ("torch", "torch.export", "torch._dynamo", "mlflow.pytorch")


class Failed(Exception):
    """The evidence does not hold up before any re-scoring: the message is the reason."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Answer:
    status: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# -- inputs: the set, the evidence, the models ----------------------------------------------------


def _registered(engine, key: verification.VerificationKey) -> eval_sets.SetVersion:
    """The set version the request names, as registered."""
    with Session(engine) as session:
        registered = eval_sets.get(session, key.set_name, key.set_version)
    if registered.content_hash != key.set_content_hash:
        raise RuntimeError(f"{registered} in the registry has content hash {registered.content_hash[:12]}…, "
                           f"the request names {key.set_content_hash[:12]}…: the request is not about this set")
    return registered


def _checked_source(registered: eval_sets.SetVersion) -> str:
    """A local copy of the set's source, once it still holds the registered table."""
    from plugins.evidence_source import EvidenceSource

    try:
        source = EvidenceSource.local_copy(registered.source)  # a set uploaded to a server's artifacts
    except OSError as exc:
        raise RuntimeError(f"cannot read {registered}: {exc}") from exc
    path = str(local_path(source))  # downloaded once: hashed and sampled from the same bytes
    facts = eval_sets.describe_table(path, registered.label_column)
    if (facts.content_hash, facts.n_rows) != (registered.content_hash, registered.n_rows):
        raise RuntimeError(f"the source of {registered} no longer holds the registered table ({registered.source} "
                           f"now has {facts.n_rows:,} rows, content hash {facts.content_hash[:12]}…; registered "
                           f"{registered.n_rows:,} rows, {registered.content_hash[:12]}…): restore it or register "
                           "a new version and evaluate on that")
    return path


def _evidence(db_uri: str, key: verification.VerificationKey):
    """The evidence run's manifest and outcomes table, read the way the gate reads them."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from plugins.evidence_source import EvidenceSource
    from registry_hooks.evidence import parse_manifest

    source = EvidenceSource(db_uri)
    run = source.tracking_store.get_run(key.evidence_run_id)
    raw = source.read_artifact(run.info.artifact_uri, EVIDENCE_OUTCOMES_PATH)  # the gate's own reader
    digest = hashlib.sha256(raw).hexdigest()
    if digest != key.outcomes_sha256:
        raise Failed(f"the outcomes changed after the evidence was logged ({EVIDENCE_OUTCOMES_PATH} of run "
                     f"{key.evidence_run_id} now hashes to {digest[:12]}…, the gate read {key.outcomes_sha256[:12]}…)")
    manifest = parse_manifest(source.read_artifact(run.info.artifact_uri, EVIDENCE_MANIFEST_PATH))
    named = (manifest.candidate.name, manifest.candidate.version, manifest.baseline.version if manifest.baseline else None)
    wanted = (key.model_name, key.candidate_version, key.baseline_version)
    if named != wanted:
        raise Failed(f"the evidence compares {named[0]} v{named[1]} with {named[2] or 'nothing'}, "
                     f"the request {wanted[0]} v{wanted[1]} with {wanted[2] or 'nothing'}")
    table = ipc.open_file(pa.BufferReader(raw)).read_all()
    return manifest, table.to_pandas()


def _check_coverage(registered: eval_sets.SetVersion, path: str, outcomes: pd.DataFrame) -> None:
    """The outcomes hold exactly the set's (row id, label) pairs, or ``Failed`` says how they differ."""
    if eval_sets.keys_digest(outcomes["row_id"], outcomes["label"]) == registered.keys_digest:
        return
    ids, labels = _set_keys(registered, path)
    logged = dict(zip(outcomes["row_id"].astype(str), outcomes["label"].astype(str)))
    expected = dict(zip(ids, labels))
    missing = len(expected.keys() - logged.keys())
    extra = len(logged.keys() - expected.keys())
    relabelled = sum(1 for r in expected.keys() & logged.keys() if expected[r] != logged[r])
    raise Failed(f"the evidence does not cover {registered} exactly: {missing:,} of its {len(expected):,} row ids "
                 f"are missing from the outcomes, {extra:,} are extra and {relabelled:,} labels differ")


def _set_keys(registered: eval_sets.SetVersion, path: str) -> tuple[list[str], list[str]]:
    has_ids = eval_sets.ROW_ID_COLUMN in dict(registered.columns)
    columns = [registered.label_column] + ([eval_sets.ROW_ID_COLUMN] if has_ids else [])
    frame = pd.concat(list(iter_table(path, columns=columns)), ignore_index=True)
    ids = frame[eval_sets.ROW_ID_COLUMN].astype(str) if has_ids else pd.Series(np.arange(len(frame)).astype(str))
    return list(ids), list(frame[registered.label_column].astype(str))


def _rows_at(path: str, positions: np.ndarray) -> pd.DataFrame:
    """The table's rows at ``positions`` (sorted), every column, converting only those rows."""
    import pyarrow as pa

    parts, start = [], 0
    for batch in iter_table(path, arrow=True):
        inside = positions[(positions >= start) & (positions < start + len(batch))] - start
        if len(inside):
            parts.append(batch.iloc[inside] if isinstance(batch, pd.DataFrame) else batch.take(pa.array(inside)).to_pandas())
        start += len(batch)
    return pd.concat(parts, ignore_index=True)


def model_location(uri: str, name: str, version: str) -> str:
    """Where a version's model files are (``uri``: its download URI), readable without calling the
    server over HTTP.

    A version registered from a logged model has its artifacts at the logged model's location;
    under a server that is ``mlflow-artifacts:/…``, mapped to the server's artifact destination the
    way the gate reads evidence (``_MLFLOW_SERVER_ARTIFACT_DESTINATION``; ``--artifacts-destination``
    for a verifier started by hand)."""
    from plugins.evidence_source import EvidenceSource

    try:
        return EvidenceSource.local_copy(uri)
    except OSError as exc:
        raise RuntimeError(f"{name} v{version}: {exc} (--artifacts-destination)") from exc


# -- re-scoring and comparing ----------------------------------------------------------------------


@dataclass
class _Comparison:
    """Disagreements per outcomes column, the first few rows quoted, and the near ties forgiven."""

    mismatches: dict[str, int] = field(default_factory=dict)
    bad_rows: set = field(default_factory=set)
    examples: list[dict[str, Any]] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    near_ties: int = 0

    def add(self, column: str, row_ids: np.ndarray, bad: np.ndarray, logged, rescored) -> None:
        self.mismatches[column] = int(bad.sum())
        for i in np.flatnonzero(bad):
            self.bad_rows.add(row_ids[i])
            if len(self.examples) < verification.EXAMPLES_KEPT:
                self.examples.append({"field": column, "row_id": str(row_ids[i]), "logged": _plain(logged[i]),
                                      "rescored": None if rescored is None else _plain(rescored[i])})


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return round(value, 6) if isinstance(value, float) else value


def _scorer(db_uri: str, name: str, version: str, registered: eval_sets.SetVersion, slices: tuple[str, ...]):
    """evaluate's scorer for one version (the same input columns, the same outputs), reused from the
    last ``SCORERS_KEPT`` this process loaded: a daemon verifying candidate after candidate against
    one baseline loads the baseline once. Keyed by the version's download URI, which names one
    logged model's files (a model deleted and registered again gets another), and the input columns."""
    from mlflow import MlflowClient

    from projects.evaluate.scoring import Scorer

    uri = MlflowClient(tracking_uri=db_uri, registry_uri=db_uri).get_model_version_download_uri(name, version)
    columns = tuple(tuple(c) for c in registered.columns)
    key = (uri, columns, registered.label_column, tuple(slices))
    scorer = _scorers.pop(key, None) or Scorer(model_location(uri, name, version), list(columns),
                                                {registered.label_column, "row_id", *slices})
    scorer.outputs = []  # a reused scorer starts empty: it accumulates what it scores
    _scorers[key] = scorer
    while len(_scorers) > SCORERS_KEPT:
        _scorers.popitem(last=False)
    return scorer


def _compare_model(comparison: _Comparison, prefix: str, rescored: dict[str, np.ndarray], proba: np.ndarray | None,
                   classes: np.ndarray | None, logged: pd.DataFrame, row_ids: np.ndarray, task: str) -> None:
    for name in _FIELDS:
        column = f"{prefix}.{name}"
        if column not in logged:
            continue
        mine, theirs = rescored.get(name), logged[column].to_numpy()
        if mine is None:  # logged a probability the model does not give
            comparison.add(column, row_ids, np.ones(len(theirs), bool), theirs, None)
        elif name != "prediction" or task == "regression":
            diff = np.abs(theirs.astype(np.float64) - mine.astype(np.float64))
            limit = PROBA_TOLERANCE if name != "prediction" else VALUE_RTOL * np.maximum(1.0, np.abs(mine))
            comparison.max_abs_diff[column] = float(diff.max(initial=0.0))
            comparison.add(column, row_ids, ~(diff <= limit), theirs, mine)
        else:
            differs = theirs.astype(str) != mine.astype(str)
            tied = _near_tie(proba, classes, theirs) & differs if proba is not None else np.zeros(len(theirs), bool)
            comparison.near_ties += int(tied.sum())
            comparison.add(column, row_ids, differs & ~tied, theirs, mine)


def _near_tie(proba: np.ndarray, classes: np.ndarray, logged: np.ndarray) -> np.ndarray:
    """Rows whose re-scored top two classes are within the tolerance and the logged class is one of them:
    the argmax may flip with the batch a row was scored in."""
    order = np.argsort(-proba, axis=1)[:, :2]
    top = np.take_along_axis(proba, order, axis=1)
    close = (top[:, 0] - top[:, 1]) <= PROBA_TOLERANCE
    names = classes.astype(str)
    return close & ((names[order[:, 0]] == logged.astype(str)) | (names[order[:, 1]] == logged.astype(str)))


def _load_models(db_uri: str, key: verification.VerificationKey, registered: eval_sets.SetVersion,
                 slices: tuple[str, ...]) -> tuple[dict[str, Any], float]:
    """evaluate's scorer for the candidate (and the baseline), loaded from the registry (or kept
    from an earlier request); seconds taken."""
    started = time.perf_counter()
    versions = {"candidate": key.candidate_version, **({"baseline": key.baseline_version} if key.baseline_version else {})}
    scorers = {p: _scorer(db_uri, key.model_name, v, registered, slices) for p, v in versions.items()}
    return scorers, time.perf_counter() - started


def _rescore(key: verification.VerificationKey, registered: eval_sets.SetVersion, rows: pd.DataFrame,
             positions: np.ndarray, manifest, outcomes: pd.DataFrame, scorers: dict[str, Any]) -> _Answer:
    """Score the sampled rows with every model and compare each logged field."""
    from projects.evaluate.comparisons import classes_of  # evaluate's own rule for the class of each probability column
    from projects.evaluate.scoring import outcomes as fields_of

    started = time.perf_counter()
    for scorer in scorers.values():
        scorer.score(rows[scorer.columns])
    row_ids = (rows[eval_sets.ROW_ID_COLUMN].astype(str) if eval_sets.ROW_ID_COLUMN in rows
               else pd.Series(positions.astype(str))).to_numpy()
    logged = outcomes.set_index(outcomes["row_id"].astype(str)).loc[row_ids]
    y = rows[registered.label_column].to_numpy()
    comparison = _Comparison()
    comparison.add("label", row_ids, logged["label"].astype(str).to_numpy() != y.astype(str), logged["label"].to_numpy(), y)
    task = manifest.task
    classes = None if task == "regression" else classes_of(outcomes["label"], scorers["candidate"].n_probability_columns)
    for prefix, scorer in scorers.items():
        scores = scorer.scores(task, classes)
        _compare_model(comparison, prefix, fields_of(scores, y, task, classes), scores.proba(), classes, logged,
                       row_ids, task)
    status = verification.PASSED if not comparison.bad_rows else verification.FAILED
    return _Answer(status, {
        "rows_checked": len(rows), "n_rows": registered.n_rows, "set": str(registered),
        "rows_disagreeing": len(comparison.bad_rows), "mismatches": comparison.mismatches,
        "examples": comparison.examples, "near_ties": comparison.near_ties, "max_abs_diff": comparison.max_abs_diff,
        "tolerance": PROBA_TOLERANCE, "score_s": round(time.perf_counter() - started, 3),
        "models": {p: f"models:/{key.model_name}/{v}" for p, v in
                   (("candidate", key.candidate_version), ("baseline", key.baseline_version)) if v},
    })


def _verify(engine, db_uri: str, claim: Claim, secret: bytes) -> _Answer:
    """Steps 1 to 3 of the module docstring; any exception becomes an error answer."""
    started, key = time.perf_counter(), claim.key
    try:
        registered = _registered(engine, key)
        path = _checked_source(registered)
        manifest, outcomes = _evidence(db_uri, key)
        _check_coverage(registered, path, outcomes)
        positions = verification.sample_rows(secret, key, registered.n_rows)
        rows = _rows_at(path, positions)
        checked = time.perf_counter()
        scorers, load_s = _load_models(db_uri, key, registered, manifest.slice_columns)
        answer = _rescore(key, registered, rows, positions, manifest, outcomes, scorers)
        answer.result.update(inputs_s=round(checked - started, 3), load_s=round(load_s, 3))
    except Failed as exc:
        answer = _Answer(verification.FAILED, {"reason": str(exc)})
    except Exception as exc:  # noqa: BLE001 - the request must end with the reason, never stay running
        answer = _Answer(verification.ERROR, {}, f"{type(exc).__name__}: {exc}"[:2000])
    answer.result["total_s"] = round(time.perf_counter() - started, 3)
    return answer


# -- the request's life: claim, heartbeat, finish ------------------------------------------------


class _Heartbeat:
    """Touches the claimed row every ``HEARTBEAT_EVERY_S`` from a thread while the work runs."""

    def __init__(self, engine, claim: Claim):
        self.engine, self.claim, self.lost = engine, claim, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="verifier-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(verification.HEARTBEAT_EVERY_S):
            try:
                with Session(self.engine) as session, session.begin():
                    if not verification.heartbeat(session, self.claim, _now_ms()):
                        self.lost = True
                        return
            except Exception as exc:  # noqa: BLE001 - a busy database: beat again next time
                print(f"verifier: heartbeat of request #{self.claim.request_id} failed ({exc}); retrying", file=sys.stderr)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def process(engine, db_uri: str, claim: Claim, secret: bytes) -> str:
    """Verify a claimed request and record the signed answer; returns the status recorded."""
    from registry_hooks.transactions import retrying

    with _Heartbeat(engine, claim):
        answer = _verify(engine, db_uri, claim, secret)

    def record() -> bool:
        with Session(engine) as session, session.begin():
            return verification.finish(session, claim, answer.status, answer.result, answer.error, secret, _now_ms())

    if not retrying(record):
        print(f"verifier: request #{claim.request_id} was taken over while this verifier worked; answer dropped",
              file=sys.stderr)
        return "lost"
    print(verification.result_message(claim.request_id, answer.status, claim.key, answer.result, answer.error),
          file=sys.stderr)
    return answer.status


def _claim(engine, worker: str, request_id: int | None, *, daemon: bool = False) -> Claim | None:
    """``request_id``; else a polling worker's pick (silent requests taken over, the claim counted as
    a start); else, for the gate's ``daemon``, a request the gate counted (the gate restarts silent
    ones itself, so ``MAX_TRIES`` counts the same starts as for any spawned verifier)."""
    from registry_hooks.transactions import retrying

    polling = request_id is None and not daemon

    def once() -> Claim | None:
        with Session(engine) as session, session.begin():
            if polling:
                verification.release_silent(session, _now_ms())
            return verification.claim(session, worker, _now_ms(), request_id, count_try=polling)

    return retrying(once)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def verify_request(db_uri: str, request_id: int) -> int:
    """``--request``: one request, which the gate already counted as a start."""
    engine = create_engine(db_uri)
    claim = _claim(engine, _worker_name(), request_id)
    if claim is None:
        print(f"verifier: request #{request_id} is not pending (taken by another verifier, finished, or missing)",
              file=sys.stderr)
        return 0
    return 0 if process(engine, db_uri, claim, server_secret(engine)) != "lost" else 1


def run_worker(db_uri: str, poll_s: float, once: bool) -> int:
    """``--worker``: take pending requests (and those whose verifier went silent) until stopped;
    ``once``: until none is left."""
    engine, worker = create_engine(db_uri), _worker_name()
    secret = server_secret(engine)
    print(f"verifier {worker}: polling {engine.url.render_as_string(hide_password=True)} every {poll_s:g} s",
          file=sys.stderr)
    while True:
        claim = _claim(engine, worker, None)
        if claim is not None:
            process(engine, db_uri, claim, secret)
        elif once:
            return 0
        else:
            time.sleep(poll_s)


def run_daemon(db_uri: str, gate_uri: str, poll_s: float, parent_pid: int) -> int:
    """``--worker --parent-pid PID``: the gate's daemon. Warms up in a background thread while it
    polls, writes what it says about a request to that request's log (``gate_uri``: the database
    URI as the gate spelled it, which names the log folder), and, once ``parent_pid`` is no longer
    its parent, finishes what is queued and exits: a CLI that asked and quit still gets its answer."""
    from plugins.verifier_launch import log_path

    warm = threading.Thread(target=_warm_up, args=(db_uri,), daemon=True, name="verifier-warm-up")
    warm.start()
    engine, worker = create_engine(db_uri), _worker_name()
    secret = server_secret(engine)
    print(f"verifier daemon {worker} of pid {parent_pid}: polling every {poll_s:g} s", file=sys.stderr)
    while True:
        claim = _claim(engine, worker, None, daemon=True)
        if claim is not None:
            warm.join()  # the verification imports nothing while another thread does
            with _stderr_to(log_path(gate_uri, claim.request_id)):
                process(engine, db_uri, claim, secret)
        elif os.getppid() != parent_pid:
            print(f"verifier daemon {worker}: pid {parent_pid} is gone and nothing is queued; exiting", file=sys.stderr)
            return 0
        else:
            time.sleep(poll_s)


def _warm_up(db_uri: str) -> None:
    """Import what a verification needs and open MLflow's tracking store of ``db_uri`` (MLflow keeps
    it per process; the first opening costs about a second), so that the first request pays none of it."""
    started = time.perf_counter()
    names = _WARM_MODULES + (_WARM_TORCH if importlib.util.find_spec("torch") else ())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the request that needs it will say why
            print(f"verifier: could not pre-import {name} ({type(exc).__name__}: {exc})", file=sys.stderr)
    try:
        from plugins.evidence_source import EvidenceSource

        EvidenceSource(db_uri).tracking_store.get_experiment("0")
    except Exception as exc:  # noqa: BLE001 - likewise
        print(f"verifier: could not open the tracking store ({type(exc).__name__}: {exc})", file=sys.stderr)
    print(f"verifier: imports done in {time.perf_counter() - started:.1f} s", file=sys.stderr)


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 appended to ``path`` meanwhile, so a crash's last words land there too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {VERIFIER_MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-uri", required=True, help="the registry's database (gatekeeper: prefix allowed)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--request", type=int, help="verify this request id and exit")
    mode.add_argument("--worker", action="store_true", help="poll for pending requests")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between polls in --worker mode")
    parser.add_argument("--once", action="store_true", help="--worker: exit when no request is pending")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="--worker as the gate's daemon: take the requests the gate started, exit after this "
                             "process does")
    parser.add_argument("--artifacts-destination", default=None,
                        help="the server's --artifacts-destination, to read mlflow-artifacts:/ models and evidence")
    args = parser.parse_args(argv)
    if args.poll <= 0:
        parser.error("--poll must be positive")
    if args.parent_pid is not None and (not args.worker or args.once):
        parser.error("--parent-pid goes with --worker, without --once")
    db_uri = args.db_uri.removeprefix(STORE_URI_PREFIX)
    if args.artifacts_destination:
        from plugins.evidence_source import SERVER_ARTIFACTS_ENV

        os.environ[SERVER_ARTIFACTS_ENV] = args.artifacts_destination
    import mlflow

    mlflow.set_tracking_uri(db_uri)  # runs:/ sources resolve through the same database
    mlflow.set_registry_uri(db_uri)
    if args.request is not None:
        return verify_request(db_uri, args.request)
    if args.parent_pid is not None:
        return run_daemon(db_uri, args.db_uri, args.poll, args.parent_pid)
    return run_worker(db_uri, args.poll, args.once)


if __name__ == "__main__":
    sys.exit(main())

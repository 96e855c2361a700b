"""Finding the gate's runs (evidence, drift) by their tags: a few indexed queries, not MLflow's search.

Why: the gate looks for a candidate's runs on every judgement. MLflow's ``search_runs`` needs
every experiment id listed first, parses a filter string, and loads each run's metrics, params,
tags, inputs and outputs as entities — most of a promotion's added latency — while the gate
needs a handful of tags and the content hashes of the dataset inputs. On MLflow's own SQL
tracking store (what ``mlflow server`` runs on by default) three queries on indexed columns give
exactly that. Any other store (the workspace-aware subclass, a REST client for the local
preview) is searched through MLflow's public API instead; both paths return the same
``FoundRun`` records, in MLflow's order (newest start time first, then run id), which a test
checks on one database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Mapping

from mlflow.entities import LifecycleStage, RunStatus, ViewType

from registry_hooks.contract import (
    INPUT_TAG_CONTENT_HASH,
    TAG_BASELINE_VERSION,
    TAG_CANDIDATE_NAME,
    TAG_CANDIDATE_VERSION,
    TAG_DATA_HASH,
    TAG_DATA_NAME,
    TAG_DRIFT,
    TAG_EVIDENCE,
)

# The run tags the gate reads; a record carries these only, whichever path found it.
TAG_KEYS = (TAG_EVIDENCE, TAG_DRIFT, TAG_CANDIDATE_NAME, TAG_CANDIDATE_VERSION, TAG_BASELINE_VERSION,
            TAG_DATA_HASH, TAG_DATA_NAME)
_FINISHED = RunStatus.to_string(RunStatus.FINISHED)
_CHUNK = 500  # ids per IN (...) list: under SQLite's oldest bound on query parameters
_PAGE = 200


@dataclass(frozen=True)
class FoundRun:
    """What the gate knows of one run: where its artifacts are, whether it may decide, its tags."""

    run_id: str
    experiment_id: str
    status: str
    run_active: bool
    experiment_active: bool
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    tags: Mapping[str, str]
    input_hashes: frozenset[str]  # the gatekeeper.content_hash tags of its dataset inputs

    @property
    def decides(self) -> bool:
        """Only a finished run, not deleted, in a live experiment, can decide (others still count
        as attempts)."""
        return self.status == _FINISHED and self.run_active and self.experiment_active

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp((self.end_time or self.start_time or 0) / 1000, tz=timezone.utc)

    @classmethod
    def of(cls, run, experiment_active: bool = True) -> FoundRun:
        """The record of an MLflow ``Run`` entity (its inputs as given: fetch the run if they are
        missing)."""
        hashes = frozenset(tag.value for dataset_input in run.inputs.dataset_inputs
                           for tag in dataset_input.tags if tag.key == INPUT_TAG_CONTENT_HASH)
        return cls(run.info.run_id, str(run.info.experiment_id), run.info.status,
                   run.info.lifecycle_stage == LifecycleStage.ACTIVE, experiment_active, run.info.start_time,
                   run.info.end_time, run.info.artifact_uri,
                   {k: v for k, v in run.data.tags.items() if k in TAG_KEYS}, hashes)


def find(store, tags: dict[str, str], *, deciding_only: bool, limit: int) -> list[FoundRun]:
    """Runs carrying every tag value in ``tags``, newest first, at most ``limit``; ``deciding_only``:
    only runs that may decide (``FoundRun.decides``), else every run whatever its state."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if type(store) is SqlAlchemyStore:  # exactly MLflow's own: a subclass may scope what is visible
        return _queried(store, tags, deciding_only, limit)
    return _searched(store, tags, deciding_only, limit)


@lru_cache(maxsize=16)
def _statements(keys: tuple[str, ...], deciding_only: bool, limit: int) -> tuple:
    """The three statements, built once per shape (values bound at execution): building
    SQLAlchemy expressions costs more than running these queries."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlInput, SqlInputTag, SqlRun, SqlTag
    from sqlalchemy import and_, bindparam, select
    from sqlalchemy.orm import aliased

    runs = select(SqlRun.run_uuid, SqlRun.experiment_id, SqlRun.status, SqlRun.lifecycle_stage,
                  SqlExperiment.lifecycle_stage, SqlRun.start_time, SqlRun.end_time, SqlRun.artifact_uri,
                  ).join(SqlExperiment, SqlExperiment.experiment_id == SqlRun.experiment_id)
    for number, key in enumerate(keys):
        tag = aliased(SqlTag)
        runs = runs.join(tag, and_(tag.run_uuid == SqlRun.run_uuid, tag.key == key,
                                   tag.value == bindparam(f"value{number}")))
    if deciding_only:
        runs = runs.where(SqlRun.status == _FINISHED, SqlRun.lifecycle_stage == LifecycleStage.ACTIVE,
                          SqlExperiment.lifecycle_stage == LifecycleStage.ACTIVE)
    runs = runs.order_by(SqlRun.start_time.is_(None), SqlRun.start_time.desc(), SqlRun.run_uuid).limit(limit)
    ids = bindparam("ids", expanding=True)
    tags = select(SqlTag.run_uuid, SqlTag.key, SqlTag.value).where(SqlTag.run_uuid.in_(ids), SqlTag.key.in_(TAG_KEYS))
    hashes = (select(SqlInput.destination_id, SqlInputTag.value)
              .join(SqlInputTag, SqlInputTag.input_uuid == SqlInput.input_uuid)
              .where(SqlInput.destination_type == "RUN", SqlInput.destination_id.in_(ids),
                     SqlInputTag.name == INPUT_TAG_CONTENT_HASH))
    return runs, tags, hashes


def _queried(store, tags: dict[str, str], deciding_only: bool, limit: int) -> list[FoundRun]:
    keys = tuple(tags)
    runs, tag_rows, hash_rows = _statements(keys, deciding_only, limit)
    with store.ManagedSessionMaker() as session:
        rows = session.execute(runs, {f"value{number}": tags[key] for number, key in enumerate(keys)}).all()
        ids = [row[0] for row in rows]
        found_tags: dict[str, dict[str, str]] = {run_id: {} for run_id in ids}
        hashes: dict[str, set[str]] = {run_id: set() for run_id in ids}
        for chunk in (ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)):
            for run_id, key, value in session.execute(tag_rows, {"ids": chunk}):
                found_tags[run_id][key] = value
            for run_id, value in session.execute(hash_rows, {"ids": chunk}):
                hashes[run_id].add(value)
    return [FoundRun(run_id, str(experiment_id), status, run_stage == LifecycleStage.ACTIVE,
                     experiment_stage == LifecycleStage.ACTIVE, start, end, artifact_uri or "", found_tags[run_id],
                     frozenset(hashes[run_id]))
            for run_id, experiment_id, status, run_stage, experiment_stage, start, end, artifact_uri in rows]


def _quote(value: str) -> str:
    """Quote a value for an MLflow filter string."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"names containing both quote characters are not supported: {value!r}")


def _experiments(store, view_type: int) -> list:
    found, token = [], None
    while True:
        page = store.search_experiments(view_type=view_type, max_results=1000, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def _searched(store, tags: dict[str, str], deciding_only: bool, limit: int) -> list[FoundRun]:
    """The same records through MLflow's public search (any tracking store)."""
    view = ViewType.ACTIVE_ONLY if deciding_only else ViewType.ALL
    experiments = {e.experiment_id: e.lifecycle_stage == LifecycleStage.ACTIVE for e in _experiments(store, view)}
    clauses = [f"tags.`{key}` = {_quote(value)}" for key, value in tags.items()]
    if deciding_only:
        clauses.append(f"attributes.status = '{_FINISHED}'")
    runs, token = [], None
    while experiments:
        page = store.search_runs(list(experiments), " and ".join(clauses), view, max_results=min(limit, _PAGE),
                                 order_by=["attributes.start_time DESC"], page_token=token)
        runs += list(page)
        token = page.token
        if not token or len(runs) >= limit:
            break
    found = []
    for run in runs[:limit]:
        if not run.inputs.dataset_inputs:  # a store that leaves inputs out of search results
            run = store.get_run(run.info.run_id)
        found.append(FoundRun.of(run, experiments[str(run.info.experiment_id)]))
    return found

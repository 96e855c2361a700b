"""Finding and fetching evidence and drift runs from the tracking side, for the registry store.

The gate runs inside the registry store, which knows nothing of runs or artifacts. This module
bridges to the tracking store (the server's own one when inside ``mlflow server``) and to the
artifact store (mapping ``mlflow-artifacts:`` URIs to the server's artifact destination rather
than calling the server over HTTP from inside itself). Every failure to fetch or parse becomes an
error string in the finding: the gate then refuses with that reason instead of answering 500.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from mlflow.entities import ViewType

from registry_hooks import drift_summary, evidence
from registry_hooks.contract import (
    DRIFT_SUMMARY_PATH,
    EVIDENCE_MANIFEST_PATH,
    EVIDENCE_OUTCOMES_PATH,
    INPUT_TAG_CONTENT_HASH,
    NO_BASELINE,
    TAG_BASELINE_VERSION,
    TAG_CANDIDATE_NAME,
    TAG_CANDIDATE_VERSION,
    TAG_DATA_HASH,
    TAG_DATA_NAME,
    TAG_DRIFT,
    TAG_EVIDENCE,
)
from registry_hooks.decision import DriftFinding, EvidenceFinding
from registry_hooks.evidence import VersionRef

_SERVER_BACKEND_ENV = "_MLFLOW_SERVER_FILE_STORE"
_SERVER_ARTIFACTS_ENV = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"
_MAX_CANDIDATE_RUNS = 20


def _quote(value: str) -> str:
    """Quote a value for an MLflow filter string."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"names containing both quote characters are not supported: {value!r}")


def _run_time(run) -> datetime:
    millis = run.info.end_time or run.info.start_time or 0
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


class EvidenceSource:
    """Looks up the newest finished evidence and drift runs for a model version."""

    def __init__(self, db_uri: str):
        self._db_uri = db_uri  # the registry's database: its tracking tables hold the evidence in process
        self._store = None

    @property
    def tracking_store(self):
        if self._store is None:
            if os.environ.get(_SERVER_BACKEND_ENV):
                from mlflow.server.handlers import _get_tracking_store

                self._store = _get_tracking_store()
            else:
                from mlflow.tracking._tracking_service.utils import _get_store

                self._store = _get_store(self._db_uri)
        return self._store

    def _experiment_ids(self) -> list[str]:
        ids, token = [], None
        while True:
            page = self.tracking_store.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                return ids

    def _search(self, filters: dict[str, str], max_results: int, experiment_ids: list[str] | None = None) -> list:
        clauses = [f"tags.`{key}` = {_quote(value)}" for key, value in filters.items()]
        clauses.append("attributes.status = 'FINISHED'")
        return list(self.tracking_store.search_runs(
            experiment_ids or self._experiment_ids(), " and ".join(clauses), ViewType.ACTIVE_ONLY,
            max_results=max_results, order_by=["attributes.start_time DESC"],
        ))

    @staticmethod
    def _repository(uri: str):
        """The artifact repository behind a run's artifact URI, resolving the server's own proxy."""
        if uri.startswith("mlflow-artifacts:") and os.environ.get(_SERVER_ARTIFACTS_ENV):
            from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts

            return _get_artifact_repo_mlflow_artifacts(), urlparse(uri).path.lstrip("/") + "/"
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(uri), ""

    def _read_artifact(self, run, path: str) -> bytes:
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        repository, prefix = self._repository(run.info.artifact_uri.rstrip("/"))
        if isinstance(repository, LocalArtifactRepository):  # read in place: no copy through a temp dir
            target = (Path(repository.artifact_dir) / prefix / path).resolve()
            if Path(repository.artifact_dir).resolve() not in target.parents:
                raise OSError(f"artifact path {path!r} leaves the run's artifact directory")
            return target.read_bytes()
        with tempfile.TemporaryDirectory() as tmp:
            return Path(repository.download_artifacts(prefix + path, tmp)).read_bytes()

    def _parse(self, run) -> evidence.Evidence:
        manifest = evidence.parse_manifest(self._read_artifact(run, EVIDENCE_MANIFEST_PATH))
        return evidence.parse_outcomes(self._read_artifact(run, EVIDENCE_OUTCOMES_PATH), manifest, run.info.run_id)

    def find_evidence(self, candidate: VersionRef, baseline_version: str | None) -> EvidenceFinding | None:
        """The newest finished evidence run for ``candidate``, preferring one against ``baseline_version``."""
        experiment_ids = self._experiment_ids()
        runs = self._search(
            {
                TAG_EVIDENCE: "1",
                TAG_CANDIDATE_NAME: candidate.name,
                TAG_CANDIDATE_VERSION: candidate.version,
            },
            _MAX_CANDIDATE_RUNS,
            experiment_ids,
        )
        if not runs:
            return None
        wanted = baseline_version or NO_BASELINE
        run = next((r for r in runs if r.data.tags.get(TAG_BASELINE_VERSION) == wanted), runs[0])
        if not (run.inputs and run.inputs.dataset_inputs):  # SQL stores include inputs in search results
            run = self.tracking_store.get_run(run.info.run_id)
        hashes = frozenset(
            tag.value
            for dataset_input in run.inputs.dataset_inputs
            for tag in dataset_input.tags
            if tag.key == INPUT_TAG_CONTENT_HASH
        )
        try:
            parsed = self._parse(run)
        except Exception as exc:  # noqa: BLE001 - any fetch failure is a refusal reason
            message = str(exc) if isinstance(exc, evidence.EvidenceError) else f"cannot read its artifacts ({type(exc).__name__}: {exc})"
            return EvidenceFinding(run.info.run_id, None, message, hashes, _run_time(run))
        newest = self._search(
            {TAG_EVIDENCE: "1", TAG_CANDIDATE_NAME: candidate.name,
             TAG_DATA_NAME: parsed.manifest.data.name},
            1,
            experiment_ids,
        )
        newer_hash = newest[0].data.tags.get(TAG_DATA_HASH) if newest else None
        return EvidenceFinding(run.info.run_id, parsed, None, hashes, _run_time(run), newer_hash)

    def find_drift(self, candidate: VersionRef) -> DriftFinding | None:
        """The newest finished drift report for ``candidate``."""
        runs = self._search(
            {
                TAG_DRIFT: "1",
                TAG_CANDIDATE_NAME: candidate.name,
                TAG_CANDIDATE_VERSION: candidate.version,
            },
            1,
        )
        if not runs:
            return None
        run = runs[0]
        try:
            summary = drift_summary.parse_drift_summary(self._read_artifact(run, DRIFT_SUMMARY_PATH))
        except Exception as exc:  # noqa: BLE001 - any fetch failure is a refusal reason
            message = str(exc) if isinstance(exc, drift_summary.DriftError) else f"cannot read its artifacts ({type(exc).__name__}: {exc})"
            return DriftFinding(run.info.run_id, None, message, _run_time(run))
        return DriftFinding(run.info.run_id, summary, None, _run_time(run))

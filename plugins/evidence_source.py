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
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from mlflow.entities import ViewType

from registry_hooks import drift_summary, evidence
from registry_hooks.decision import DriftFinding, EvidenceFinding
from registry_hooks.evidence import VersionRef

_SERVER_BACKEND_ENV = "_MLFLOW_SERVER_FILE_STORE"
_SERVER_ARTIFACTS_ENV = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"
_MAX_CANDIDATE_RUNS = 20
_CACHE_SIZE = 4


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

    def __init__(self, tracking_uri: str | None):
        self._tracking_uri = tracking_uri
        self._store = None
        self._lock = threading.Lock()
        self._parsed: OrderedDict[tuple[str, str], evidence.Evidence] = OrderedDict()

    @property
    def tracking_store(self):
        if self._store is None:
            if os.environ.get(_SERVER_BACKEND_ENV):
                from mlflow.server.handlers import _get_tracking_store

                self._store = _get_tracking_store()
            else:
                from mlflow.tracking._tracking_service.utils import _get_store

                self._store = _get_store(self._tracking_uri)
        return self._store

    def _experiment_ids(self) -> list[str]:
        ids, token = [], None
        while True:
            page = self.tracking_store.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                return ids

    def _search(self, filters: dict[str, str], max_results: int) -> list:
        clauses = [f"tags.`{key}` = {_quote(value)}" for key, value in filters.items()]
        clauses.append("attributes.status = 'FINISHED'")
        return list(self.tracking_store.search_runs(
            self._experiment_ids(), " and ".join(clauses), ViewType.ACTIVE_ONLY,
            max_results=max_results, order_by=["attributes.start_time DESC"],
        ))

    def _read_artifact(self, run, path: str) -> bytes:
        uri = run.info.artifact_uri.rstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            if uri.startswith("mlflow-artifacts:") and os.environ.get(_SERVER_ARTIFACTS_ENV):
                from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts

                relative = urlparse(uri).path.lstrip("/")
                local = _get_artifact_repo_mlflow_artifacts().download_artifacts(f"{relative}/{path}", tmp)
            else:
                from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

                local = get_artifact_repository(uri).download_artifacts(path, tmp)
            return Path(local).read_bytes()

    def _parse(self, run) -> evidence.Evidence:
        manifest = evidence.parse_manifest(self._read_artifact(run, evidence.MANIFEST_PATH))
        key = (run.info.run_id, manifest.outcomes_sha256)
        with self._lock:
            if key in self._parsed:
                self._parsed.move_to_end(key)
                return self._parsed[key]
        parsed = evidence.parse_outcomes(self._read_artifact(run, evidence.OUTCOMES_PATH), manifest, run.info.run_id)
        with self._lock:
            self._parsed[key] = parsed
            while len(self._parsed) > _CACHE_SIZE:
                self._parsed.popitem(last=False)
        return parsed

    def find_evidence(self, candidate: VersionRef, baseline_version: str | None) -> EvidenceFinding | None:
        """The newest finished evidence run for ``candidate``, preferring one against ``baseline_version``."""
        runs = self._search(
            {
                evidence.TAG_EVIDENCE: "1",
                evidence.TAG_CANDIDATE_NAME: candidate.name,
                evidence.TAG_CANDIDATE_VERSION: candidate.version,
            },
            _MAX_CANDIDATE_RUNS,
        )
        if not runs:
            return None
        wanted = baseline_version or evidence.NO_BASELINE
        run = next((r for r in runs if r.data.tags.get(evidence.TAG_BASELINE_VERSION) == wanted), runs[0])
        run = self.tracking_store.get_run(run.info.run_id)  # search results may omit dataset inputs
        hashes = frozenset(
            tag.value
            for dataset_input in run.inputs.dataset_inputs
            for tag in dataset_input.tags
            if tag.key == "gatekeeper.content_hash"
        )
        try:
            parsed = self._parse(run)
        except Exception as exc:  # noqa: BLE001 - any fetch failure is a refusal reason
            message = str(exc) if isinstance(exc, evidence.EvidenceError) else f"cannot read its artifacts ({type(exc).__name__}: {exc})"
            return EvidenceFinding(run.info.run_id, None, message, hashes, _run_time(run))
        newest = self._search(
            {evidence.TAG_EVIDENCE: "1", evidence.TAG_CANDIDATE_NAME: candidate.name,
             evidence.TAG_DATA_NAME: parsed.manifest.data.name},
            1,
        )
        newer_hash = newest[0].data.tags.get(evidence.TAG_DATA_HASH) if newest else None
        return EvidenceFinding(run.info.run_id, parsed, None, hashes, _run_time(run), newer_hash)

    def find_drift(self, candidate: VersionRef) -> DriftFinding | None:
        """The newest finished drift report for ``candidate``."""
        runs = self._search(
            {
                drift_summary.TAG_DRIFT: "1",
                evidence.TAG_CANDIDATE_NAME: candidate.name,
                evidence.TAG_CANDIDATE_VERSION: candidate.version,
            },
            1,
        )
        if not runs:
            return None
        run = runs[0]
        try:
            summary = drift_summary.parse_drift_summary(self._read_artifact(run, drift_summary.SUMMARY_PATH))
        except Exception as exc:  # noqa: BLE001 - any fetch failure is a refusal reason
            message = str(exc) if isinstance(exc, drift_summary.DriftError) else f"cannot read its artifacts ({type(exc).__name__}: {exc})"
            return DriftFinding(run.info.run_id, None, message, _run_time(run))
        return DriftFinding(run.info.run_id, summary, None, _run_time(run))

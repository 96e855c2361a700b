"""Finding and fetching evidence and drift runs from the tracking side, for the registry store.

The gate runs inside the registry store, which knows nothing of runs or artifacts. This module
bridges to the tracking store (the server's own one when inside ``mlflow server``) and to the
artifact store (mapping ``mlflow-artifacts:`` URIs to the server's artifact destination rather
than calling the server over HTTP from inside itself). Every failure to fetch or parse becomes an
error string in the finding: the gate then refuses with that reason instead of answering 500.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, NamedTuple
from pathlib import Path
from urllib.parse import urlparse

from plugins.evidence_runs import FoundRun, find
from registry_hooks import drift_summary, evidence, outcomes_file
from registry_hooks.contract import (
    DRIFT_SUMMARY_PATH,
    EVIDENCE_MANIFEST_PATH,
    EVIDENCE_OUTCOMES_PATH,
    NO_BASELINE,
    TAG_BASELINE_VERSION,
    TAG_CANDIDATE_NAME,
    TAG_CANDIDATE_VERSION,
    TAG_DATA_HASH,
    TAG_DATA_NAME,
    TAG_DRIFT,
    TAG_EVIDENCE,
)
from registry_hooks.decision import DriftFinding
from registry_hooks.eval_sets import SetVersion
from registry_hooks.evidence_seen import SeenRun
from registry_hooks.evidence import VersionRef
from registry_hooks.memo import Memo
from registry_hooks.trust import NO_TRUST_FACTS, Attempt, EvidenceFinding, SetEvidence, TrustFacts

SERVER_BACKEND_ENV = "_MLFLOW_SERVER_FILE_STORE"  # set by `mlflow server` for its workers
SERVER_ARTIFACTS_ENV = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"  # set by `mlflow server`; a spawned verifier inherits it
_MAX_EVIDENCE_RUNS = 1000  # a candidate's evidence runs the gate weighs (every attempt counts)
# An outcomes file (path, device, inode, size, mtime, ctime) -> the sha256 it had when parsed and
# found to match its manifest: an unchanged file is not read again until an array is needed.
_CHECKED_FILES = Memo(4096)


def _data_text(run: FoundRun) -> str:
    """A run's data for people: its name and the start of its content hash."""
    return f"data '{run.tags.get(TAG_DATA_NAME, '?')}' ({run.tags.get(TAG_DATA_HASH, '')[:12]}…)"


class Gathered(NamedTuple):
    """What ``EvidenceSource.gather`` found for one judgement."""

    finding: EvidenceFinding | None
    trust: TrustFacts
    observed: tuple[SeenRun, ...]


@dataclass(frozen=True)
class RequiredSet:
    """A set the policy requires, with its registered versions newest first (none: unregistered)."""

    name: str
    versions: tuple[SetVersion, ...]


def _read(path: Path, check_size: Callable[[int], None] | None = None) -> bytes:
    """The file's bytes, its size checked first; never more than that size: a file that grows in
    place while it is read (an upload over it) is refused, not read to whatever length it reaches."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if check_size is not None:
            check_size(size)
        data = file.read(size + 1)
    if len(data) > size:
        raise OSError(f"{path.name} changed while it was read")
    return data


@dataclass
class _Reading:
    """What one judgement reads: the outcome columns its policy uses, and the rows it has taken on.
    Every file a judgement parses (the deciding run, earlier attempts, runs on the same data) is
    held until the verdict, so the worker's budget bounds their sum."""

    columns: outcomes_file.Wanted
    budget: int
    taken: int = 0

    def admit(self, n_rows: int) -> None:
        """Count ``n_rows`` more, or refuse them (``outcomes_file.TooManyRows``) before they are read."""
        outcomes_file.within_budget(n_rows, self.budget, self.taken)
        self.taken += n_rows


class EvidenceSource:
    """Finds a candidate's evidence runs (all of them: every attempt counts) and its newest drift run."""

    def __init__(self, db_uri: str):
        self._db_uri = db_uri  # the registry's database: its tracking tables hold the evidence in process
        self._store = None
        self.max_rows = outcomes_file.max_rows()  # the rows of one evidence file this worker judges

    @property
    def tracking_store(self):
        if self._store is None:
            if os.environ.get(SERVER_BACKEND_ENV):
                from mlflow.server.handlers import _get_tracking_store

                self._store = _get_tracking_store()
            else:
                from mlflow.tracking._tracking_service.utils import _get_store

                self._store = _get_store(self._db_uri)
        return self._store

    @staticmethod
    def _repository(uri: str):
        """The artifact repository behind a run's artifact URI, resolving the server's own proxy."""
        if uri.startswith("mlflow-artifacts:") and os.environ.get(SERVER_ARTIFACTS_ENV):
            from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts

            return _get_artifact_repo_mlflow_artifacts(), urlparse(uri).path.lstrip("/") + "/"
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(uri), ""

    @classmethod
    def local_copy(cls, uri: str) -> str:
        """A local path (or a URI MLflow's client reads) for an artifact URI: ``mlflow-artifacts:/…``
        resolved to the server's own artifact destination, as the gate reads evidence; anything
        else unchanged. The verifier reads models and registered sets through this."""
        if not uri.startswith("mlflow-artifacts:"):
            return uri
        if not os.environ.get(SERVER_ARTIFACTS_ENV):
            raise OSError(f"{uri} is served by the tracking server: give the verifier the server's "
                          "--artifacts-destination")
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        repository, prefix = cls._repository(uri)
        if isinstance(repository, LocalArtifactRepository):
            return str(Path(repository.artifact_dir) / prefix)
        return repository.download_artifacts(prefix.rstrip("/"), tempfile.mkdtemp(prefix="gatekeeper-artifact-"))

    def _local_path(self, artifact_uri: str, path: str) -> Path | None:
        """The file behind one artifact when the artifacts are on this machine (read in place, no
        copy through a temp dir), else None."""
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        repository, prefix = self._repository(artifact_uri.rstrip("/"))
        if not isinstance(repository, LocalArtifactRepository):
            return None
        root = Path(repository.artifact_dir).resolve()
        target = (root / prefix / path).resolve()
        if root not in target.parents:
            raise OSError(f"artifact path {path!r} leaves the run's artifact directory")
        return target

    def read_artifact(self, artifact_uri: str, path: str, check_size: Callable[[int], None] | None = None) -> bytes:
        """One artifact of the run whose artifacts are at ``artifact_uri``; ``check_size`` sees its
        size in bytes before it is read (and may refuse it)."""
        local = self._local_path(artifact_uri, path)
        if local is None:
            repository, prefix = self._repository(artifact_uri.rstrip("/"))
            with tempfile.TemporaryDirectory() as tmp:
                return _read(Path(repository.download_artifacts(prefix + path, tmp)), check_size)
        return _read(local, check_size)

    def _parse(self, run: FoundRun, reading: _Reading) -> evidence.Evidence:
        """The run's evidence, its outcomes reduced to the columns the judgement reads; refused
        before they are read when the manifest's row count is over what the judgement may still
        take on. An outcomes file parsed before and unchanged since (same inode, size, mtime and
        ctime) is not read again unless an array is needed."""
        manifest = evidence.parse_manifest(self.read_artifact(run.artifact_uri, EVIDENCE_MANIFEST_PATH))
        reading.admit(manifest.data.n_rows)
        wanted = reading.columns
        local = self._local_path(run.artifact_uri, EVIDENCE_OUTCOMES_PATH)
        fits = functools.partial(outcomes_file.within_file_budget, budget=reading.budget)
        if local is None:
            raw = self.read_artifact(run.artifact_uri, EVIDENCE_OUTCOMES_PATH, fits)
            return evidence.parse_outcomes(raw, manifest, run.run_id, wanted)
        stat = local.stat()  # before the read: a change after it makes a new key
        read = functools.partial(_read, local, fits)
        key = (str(local), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if _CHECKED_FILES.peek(key) == manifest.outcomes_sha256:
            return evidence.checked_before(read, manifest, run.run_id, lambda: _CHECKED_FILES.discard(key), wanted)
        parsed = evidence.parse_outcomes(read(), manifest, run.run_id, wanted)
        _CHECKED_FILES.put(key, manifest.outcomes_sha256)
        return parsed

    def _evidence_runs(self, candidate: VersionRef) -> list[FoundRun]:
        """Every evidence run of ``candidate``, newest first, whatever its status, deleted or in a
        deleted experiment: every attempt counts, and marking a failed one FAILED or deleting it
        must not hide it. Only a finished, active run can decide."""
        return find(self.tracking_store, {TAG_EVIDENCE: "1", TAG_CANDIDATE_NAME: candidate.name,
                                          TAG_CANDIDATE_VERSION: candidate.version},
                    deciding_only=False, limit=_MAX_EVIDENCE_RUNS)

    def _finding(self, run: FoundRun, reading: _Reading, newer_hash: str | None = None) -> EvidenceFinding:
        """One run read and parsed; any failure becomes the finding's error (the gate refuses with it)."""
        try:
            parsed = self._parse(run, reading)
        except Exception as exc:  # noqa: BLE001 - any fetch failure is a refusal reason
            message = str(exc) if isinstance(exc, evidence.EvidenceError) else f"cannot read its artifacts ({type(exc).__name__}: {exc})"
            return EvidenceFinding(run.run_id, None, message, run.input_hashes, run.time,
                                   error_numbers=getattr(exc, "numbers", {}))
        return EvidenceFinding(run.run_id, parsed, None, run.input_hashes, run.time, newer_hash)

    def _outcome_files(self, runs: list[FoundRun]) -> list[FoundRun]:
        """The runs of one data version with distinct outcome files (one per file hash): files
        that are byte-identical need no comparison, the others are parsed and compared."""
        distinct: dict[str, FoundRun] = {}
        for run in runs:
            try:
                sha = evidence.parse_manifest(self.read_artifact(run.artifact_uri, EVIDENCE_MANIFEST_PATH)).outcomes_sha256
            except Exception:  # noqa: BLE001 - an unreadable run is its own "file": the comparison reports it
                sha = run.run_id
            distinct.setdefault(sha, run)
        return list(distinct.values())

    def gather(self, candidate: VersionRef, baseline_version: str | None, sets: tuple[RequiredSet, ...],
               seen: tuple[SeenRun, ...] = (), columns: outcomes_file.Wanted = outcomes_file.ALL) -> Gathered:
        """The deciding evidence run and everything else the gate must weigh (``registry_hooks.trust``).

        Without required sets (the weak mode) the newest run against this baseline decides; with
        them, the newest run on the first set's current version. Either way, every other data
        version the candidate was evaluated on against this baseline is an earlier attempt, and
        runs on one data version are compared with each other. ``seen``: the runs the gate recorded
        earlier (``registry_hooks.evidence_seen``); one no longer found under its recorded identity
        is weighed as it was recorded. ``observed``: every run found now, for the record. ``columns``:
        the optional outcome columns the policy's checks read (``comparison_checks.columns_kept``).
        """
        runs = self._evidence_runs(candidate)
        wanted = baseline_version or NO_BASELINE
        mine = [r for r in runs if r.tags.get(TAG_BASELINE_VERSION) == wanted]
        groups: dict[str, list[FoundRun]] = {}
        for run in mine:
            groups.setdefault(run.tags.get(TAG_DATA_HASH, ""), []).append(run)
        gone = self._hidden(seen, wanted, groups, {r.run_id: r for r in runs})
        active = [r for r in runs if r.decides]
        mine_active = [r for r in mine if r.decides]
        reading = _Reading(columns, self.max_rows)
        finding, trust = (self._weak(candidate, active, mine_active, groups, reading) if not sets
                          else self._registered(sets, mine_active, groups, reading))
        counted = {v.content_hash for v in sets[0].versions} if sets else None
        gone = tuple(a for key, a in gone if counted is None or key in counted)
        observed = tuple(SeenRun(r.run_id, candidate, r.tags.get(TAG_BASELINE_VERSION, ""),
                                 r.tags.get(TAG_DATA_HASH, "")) for r in runs)
        return Gathered(finding, replace(trust, attempts=trust.attempts + gone) if gone else trust, observed)

    def _hidden(self, seen: tuple[SeenRun, ...], wanted: str, groups: dict[str, list[FoundRun]],
                found: dict[str, FoundRun]) -> list[tuple[str, Attempt]]:
        """Recorded runs against this baseline that the search no longer finds as recorded: put back
        into their recorded data group when the run still exists (retagged), else an attempt that
        cannot be read (the run is gone)."""
        gone = []
        for was in seen:
            if was.baseline_version != wanted or was.run_id in {r.run_id for r in groups.get(was.data_hash, [])}:
                continue
            run = found.get(was.run_id) or self._run_or_none(was.run_id)
            if run is not None:
                groups.setdefault(was.data_hash, []).append(run)
                continue
            gone.append((was.data_hash, Attempt(
                f"data {was.data_hash[:12]}…",
                EvidenceFinding(was.run_id, None, "the run no longer exists (the gate saw it before: every attempt "
                                "counts)", frozenset(), datetime.now(timezone.utc)))))
        return gone

    def _run_or_none(self, run_id: str) -> FoundRun | None:
        from mlflow.exceptions import MlflowException

        try:
            run = self.tracking_store.get_run(run_id)
        except MlflowException:
            return None
        return FoundRun.of(run, self.tracking_store.get_experiment(run.info.experiment_id).lifecycle_stage == "active")

    def _weak(self, candidate: VersionRef, active: list[FoundRun], mine_active: list[FoundRun],
              groups: dict[str, list[FoundRun]], reading: _Reading) -> tuple:
        deciding = mine_active[0] if mine_active else None
        if deciding is None:  # nothing against this baseline: the newest run says what it was against
            return (self._finding(active[0], reading) if active else None), NO_TRUST_FACTS
        data_hash = deciding.tags.get(TAG_DATA_HASH, "")
        newest = find(self.tracking_store, {TAG_EVIDENCE: "1", TAG_CANDIDATE_NAME: candidate.name,
                                            TAG_DATA_NAME: deciding.tags.get(TAG_DATA_NAME, "")}, deciding_only=True, limit=1)
        newer_hash = newest[0].tags.get(TAG_DATA_HASH) if newest else None
        attempts = tuple(Attempt(_data_text(group[0]), self._finding(group[0], reading))
                         for key, group in groups.items() if key != data_hash)
        return (self._finding(deciding, reading, newer_hash),
                TrustFacts(attempts=attempts, same_data=self._same_data(groups, reading)))

    def _registered(self, sets: tuple[RequiredSet, ...], mine_active: list[FoundRun],
                    groups: dict[str, list[FoundRun]], reading: _Reading) -> tuple:
        found, registered_hashes = [], set()
        for required in sets:
            versions = {v.content_hash: v for v in required.versions}
            registered_hashes |= set(versions)
            current = required.versions[0] if required.versions else None
            on_current = [r for r in mine_active if current and r.tags.get(TAG_DATA_HASH) == current.content_hash]
            older = tuple(sorted(versions[h].version for h in groups if h in versions and versions[h] is not current))
            found.append(SetEvidence(required.name, current, self._finding(on_current[0], reading) if on_current else None,
                                     older))
        primary_versions = {v.content_hash: v for v in sets[0].versions}
        current_hash = sets[0].versions[0].content_hash if sets[0].versions else None
        attempts = tuple(Attempt(str(primary_versions[key]), self._finding(group[0], reading))
                         for key, group in groups.items() if key in primary_versions and key != current_hash)
        unregistered = tuple(r.run_id for r in mine_active if r.tags.get(TAG_DATA_HASH) not in registered_hashes)
        kept = {key: group for key, group in groups.items() if key in registered_hashes}
        trust = TrustFacts(sets=tuple(found), attempts=attempts, same_data=self._same_data(kept, reading),
                           unregistered=unregistered)
        return found[0].finding, trust

    def _same_data(self, groups: dict[str, list[FoundRun]], reading: _Reading) -> tuple:
        """Each data version evaluated by several runs with different outcome files, parsed for comparison."""
        compared = []
        for group in groups.values():
            if len(group) > 1:
                files = self._outcome_files(group)
                if len(files) > 1:
                    compared.append((_data_text(group[0]), tuple(self._finding(r, reading) for r in files)))
        return tuple(compared)

    def find_drift(self, candidate: VersionRef) -> DriftFinding | None:
        """The newest finished drift report for ``candidate``."""
        runs = find(self.tracking_store, {TAG_DRIFT: "1", TAG_CANDIDATE_NAME: candidate.name,
                                          TAG_CANDIDATE_VERSION: candidate.version}, deciding_only=True, limit=1)
        if not runs:
            return None
        run = runs[0]
        try:
            summary = drift_summary.parse_drift_summary(self.read_artifact(run.artifact_uri, DRIFT_SUMMARY_PATH))
        except Exception as exc:  # noqa: BLE001 - any fetch failure is a refusal reason
            message = str(exc) if isinstance(exc, drift_summary.DriftError) else f"cannot read its artifacts ({type(exc).__name__}: {exc})"
            return DriftFinding(run.run_id, None, message, run.time)
        return DriftFinding(run.run_id, summary, None, run.time)

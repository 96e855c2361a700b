"""The evidence format: what an evaluation logs so the gate can decide (see docs/evidence-format.md).

An evaluation run carries the per-example outcomes of the candidate and the baseline scored on
the same rows, not a verdict. The gate never trusts a pass/fail flag, a p-value or a threshold
from a client: it recomputes the comparison from these outcomes under the server's policy. This
module parses and validates the format (server side, no MLflow imports) and provides
``log_evidence`` so any evaluator, not only ours, can produce it (client side).
"""

from __future__ import annotations

import hashlib
import json
import dataclasses
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from registry_hooks.contract import (
    ARTIFACT_DIR,
    EVIDENCE_FORMAT,
    EVIDENCE_MANIFEST_PATH,
    EVIDENCE_OUTCOMES_PATH,
    NO_BASELINE,
    TAG_BASELINE_VERSION,
    TAG_CANDIDATE_NAME,
    TAG_CANDIDATE_VERSION,
    TAG_DATA_HASH,
    TAG_DATA_NAME,
    TAG_EVIDENCE,
)
from registry_hooks.memo import Memo
from registry_hooks.outcomes import SliceCodes
from registry_hooks.outcomes_file import ALL, EvidenceError, Layout, Wanted, read_columns
from registry_hooks.statistics import ModelOutcomes, PairedOutcomes

TASKS = ("classification", "regression")
MODEL_FIELDS = ("prediction", "proba_label", "score", "loss")  # loss is for people; the gate recomputes


@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class DataRef:
    name: str
    content_hash: str
    n_rows: int
    source: str = ""


@dataclass(frozen=True)
class Manifest:
    """The parsed ``evidence.json``: which versions were compared, on what data, when."""

    task: str
    candidate: VersionRef
    baseline: VersionRef | None
    data: DataRef
    created_at: datetime
    outcomes_sha256: str
    slice_columns: tuple[str, ...]
    evaluator: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": EVIDENCE_FORMAT,
            "task": self.task,
            "candidate": {"name": self.candidate.name, "version": self.candidate.version},
            "baseline": (
                {"name": self.baseline.name, "version": self.baseline.version} if self.baseline else None
            ),
            "data": {
                "name": self.data.name,
                "content_hash": self.data.content_hash,
                "n_rows": self.data.n_rows,
                "source": self.data.source,
            },
            "created_at": self.created_at.isoformat(),
            "outcomes": {"path": EVIDENCE_OUTCOMES_PATH.rsplit("/", 1)[1], "sha256": self.outcomes_sha256},
            "slice_columns": list(self.slice_columns),
            "evaluator": self.evaluator,
        }


def _require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise EvidenceError(f"{where}: missing key '{key}'")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise EvidenceError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _version_ref(data: Any, where: str) -> VersionRef:
    version = _require(data, "version", (str, int), where)
    return VersionRef(name=_require(data, "name", str, where), version=str(version))


def parse_manifest(raw: bytes | str) -> Manifest:
    """Parse and validate ``evidence.json``; any defect is an :class:`EvidenceError`."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"{EVIDENCE_MANIFEST_PATH} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EvidenceError(f"{EVIDENCE_MANIFEST_PATH} must hold a JSON object")
    if data.get("format") != EVIDENCE_FORMAT:
        raise EvidenceError(f"{EVIDENCE_MANIFEST_PATH}: format must be {EVIDENCE_FORMAT!r}, got {data.get('format')!r}")
    task = _require(data, "task", str, "manifest")
    if task not in TASKS:
        raise EvidenceError(f"manifest.task must be one of {TASKS}, got {task!r}")
    data_ref = _require(data, "data", dict, "manifest")
    outcomes = _require(data, "outcomes", dict, "manifest")
    try:
        created_at = datetime.fromisoformat(_require(data, "created_at", str, "manifest"))
    except ValueError as exc:
        raise EvidenceError(f"manifest.created_at is not an ISO-8601 time: {exc}") from exc
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=timezone.utc)
    content_hash = _require(data_ref, "content_hash", str, "manifest.data")
    if len(content_hash) != 64 or any(c not in "0123456789abcdef" for c in content_hash):
        raise EvidenceError("manifest.data.content_hash must be a full SHA-256 (64 lowercase hex characters)")
    slice_columns = data.get("slice_columns", [])
    if not isinstance(slice_columns, list) or not all(isinstance(c, str) for c in slice_columns):
        raise EvidenceError("manifest.slice_columns must be a list of column names")
    baseline = data.get("baseline")
    return Manifest(
        task=task,
        candidate=_version_ref(data.get("candidate"), "manifest.candidate"),
        baseline=_version_ref(baseline, "manifest.baseline") if baseline is not None else None,
        data=DataRef(
            name=_require(data_ref, "name", str, "manifest.data"),
            content_hash=content_hash,
            n_rows=_require(data_ref, "n_rows", int, "manifest.data"),
            source=str(data_ref.get("source", "")),
        ),
        created_at=created_at,
        outcomes_sha256=_require(outcomes, "sha256", str, "manifest.outcomes"),
        slice_columns=tuple(slice_columns),
        evaluator=str(data.get("evaluator", "")),
    )


@dataclass(frozen=True)
class Arrays:
    """The per-example arrays of one evidence bundle, as parsed from its outcomes file."""

    outcomes: PairedOutcomes | None  # None for first-release evidence where only the candidate ran
    candidate_only: ModelOutcomes
    label: np.ndarray
    slices: dict[str, SliceCodes]  # the slices the judgement uses (``outcomes_file.Wanted``)
    row_id_column: Any = None  # the outcomes' row ids as an Arrow column, decoded only on demand


class OutcomesChanged(RuntimeError):
    """An outcomes file read lazily no longer matched its manifest: it changed after the gate
    checked it. Not an ``EvidenceError`` on purpose: it must reach the judge, which judges again
    reading every file afresh (``plugins.judging``), rather than be scored as bad evidence."""


@dataclass(frozen=True)
class Evidence:
    """A validated evidence bundle: the manifest and, loaded on first use, the paired outcomes.

    Why lazy: most judgements of a known file need only the manifest (the statistics of its
    content are kept, ``registry_hooks.memo``), and parsing 100k rows is most of a promotion's
    cost. ``load`` parses and validates; it is called at most once per instance.
    """

    run_id: str
    manifest: Manifest
    load: Callable[[], Arrays] = dataclasses.field(repr=False, compare=False)
    # (run id, manifest) when parsed from bytes checked against the manifest's sha256, which then
    # pins every array: results computed from it may be reused (registry_hooks.memo); None otherwise
    content_identity: tuple | None = None

    @cached_property
    def arrays(self) -> Arrays:
        return self.load()

    @property
    def outcomes(self) -> PairedOutcomes | None:
        return self.arrays.outcomes

    @property
    def candidate_only(self) -> ModelOutcomes:
        return self.arrays.candidate_only

    @property
    def label(self) -> np.ndarray:
        return self.arrays.label

    @property
    def slices(self) -> dict[str, SliceCodes]:
        return self.arrays.slices

    @property
    def compared(self) -> bool:
        """Whether a baseline was scored too (else first-release evidence), known without loading."""
        return self.manifest.baseline is not None

    @property
    def n(self) -> int:
        return self.manifest.data.n_rows  # a parse refuses outcomes with any other row count

    @property
    def row_ids(self) -> np.ndarray:
        """Each row's id as text (decoded now: most judgements never need them)."""
        if self.arrays.row_id_column is None:
            return np.arange(self.n).astype(str)
        return np.asarray(self.arrays.row_id_column.to_pylist(), dtype=object).astype(str)


def _model_outcomes(columns: Mapping[str, Any], prefix: str, task: str) -> ModelOutcomes:
    """One model's arrays; its probabilities were range-checked as they were read."""
    name = f"{prefix}.prediction"
    if name not in columns:
        raise EvidenceError(f"outcomes lack column '{name}'")
    prediction = columns[name]
    if task == "regression":
        prediction = prediction.astype(np.float64, copy=False)
        if not np.isfinite(prediction).all():
            raise EvidenceError(f"'{name}' holds NaN or infinite predictions")
    optional = {field: columns.get(f"{prefix}.{field}") for field in ("proba_label", "score")}  # None: not kept
    return ModelOutcomes(prediction=prediction, **optional)


def _no_nan_classes(columns: Mapping[str, Any]) -> None:
    """A NaN class would be a class of its own (NaN != NaN): refuse it in labels and predictions."""
    for name in ["label"] + [n for n in columns if n.endswith(".prediction")]:
        values = columns[name]
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise EvidenceError(f"'{name}' holds {int(np.isnan(values).sum())} NaN values: a class label must be a value")


_DISTINCT_ROW_IDS = Memo(4096)  # outcomes sha256 -> True once its row ids were found distinct: hashed once per file


def _read_columns(raw: bytes, manifest: Manifest, wanted: Wanted) -> dict[str, Any]:
    """The outcomes file's columns that the judgement keeps (``outcomes_file.read_columns``), once
    its bytes, rows and required columns agree with the manifest."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != manifest.outcomes_sha256:
        raise EvidenceError(
            f"{EVIDENCE_OUTCOMES_PATH} does not match the sha256 in its manifest (file {digest[:12]}…, "
            f"manifest {manifest.outcomes_sha256[:12]}…): the file was changed or truncated"
        )
    import pyarrow as pa

    layout = Layout(models=("candidate", "baseline") if manifest.baseline else ("candidate",),
                    slices=manifest.slice_columns, wanted=wanted)
    columns, n_rows = read_columns(raw, manifest.data.n_rows, layout, check_ids=not _DISTINCT_ROW_IDS.peek(digest))
    pa.default_memory_pool().release_unused()  # hand the last batch's buffers back to the OS
    if n_rows == 0:
        raise EvidenceError("outcomes are empty: evaluate on at least one example")
    if "row_id" in columns:
        columns["row_id"], distinct = columns["row_id"]
        if not distinct:
            raise EvidenceError("outcomes.row_id has duplicates: each example must appear once")
        _DISTINCT_ROW_IDS.put(digest, True)
    if n_rows != manifest.data.n_rows:
        raise EvidenceError(f"outcomes hold {n_rows} rows but the manifest's data has {manifest.data.n_rows}")
    for required in ("row_id", "label"):
        if required not in columns:
            raise EvidenceError(f"outcomes lack column '{required}'")
    return columns


def _arrays(raw: bytes, manifest: Manifest, wanted: Wanted) -> Arrays:
    """Validate the outcomes table against its manifest and build the paired arrays."""
    columns = _read_columns(raw, manifest, wanted)
    label = columns["label"]
    if manifest.task == "regression":
        label = label.astype(np.float64, copy=False)
        if not np.isfinite(label).all():
            raise EvidenceError("'label' holds NaN or infinite values")
    else:
        _no_nan_classes({name: values for name, values in columns.items() if values is not None})
    candidate = _model_outcomes(columns, "candidate", manifest.task)
    paired = None
    if manifest.baseline is not None:
        paired = PairedOutcomes(
            label=label, baseline=_model_outcomes(columns, "baseline", manifest.task), candidate=candidate
        )
    slices = {}
    for column in manifest.slice_columns:
        key = f"slice.{column}"
        if key not in columns:
            raise EvidenceError(f"manifest names slice column '{column}' but outcomes lack '{key}'")
        if columns[key] is not None:  # else present but not used by this judgement, so not read
            slices[column] = columns[key]
    return Arrays(outcomes=paired, candidate_only=candidate, label=label, slices=slices, row_id_column=columns["row_id"])


def parse_outcomes(raw: bytes, manifest: Manifest, run_id: str, wanted: Wanted = ALL) -> Evidence:
    """Validate the outcomes table against its manifest now; raises ``EvidenceError``. ``wanted``:
    the optional columns the judgement uses (the others are validated, not kept)."""
    arrays = _arrays(raw, manifest, wanted)
    return Evidence(run_id=run_id, manifest=manifest, load=lambda: arrays, content_identity=(run_id, manifest))


def checked_before(read: Callable[[], bytes], manifest: Manifest, run_id: str, forget: Callable[[], None],
                   wanted: Wanted = ALL) -> Evidence:
    """Evidence whose outcomes file was parsed and found to match ``manifest`` before and has not
    changed since (the caller's evidence: ``plugins.evidence_source``); read and validated again
    only if an array is needed. If it no longer matches then, ``forget`` is called (so the next
    judgement parses it at once) and ``OutcomesChanged`` raised."""
    def load() -> Arrays:
        try:
            return _arrays(read(), manifest, wanted)
        except (EvidenceError, OSError) as exc:
            forget()
            raise OutcomesChanged(f"evidence run {run_id}: {exc}") from exc

    return Evidence(run_id=run_id, manifest=manifest, load=load, content_identity=(run_id, manifest))


#: Rows per record batch of ``outcomes.arrow``. Fixed, so that the file's bytes (and the sha256 the
#: manifest records) depend only on its rows, not on how an evaluator produced them: the local
#: engine writes one table, the Spark engine streams partitions, and both give the same file.
OUTCOMES_BATCH_ROWS = 65_536
_OUTCOMES_COMPRESSION = "zstd"


def outcomes_table(
    *,
    row_id: Sequence[Any],
    label: Sequence[Any],
    candidate: Mapping[str, Sequence[Any]],
    baseline: Mapping[str, Sequence[Any]] | None = None,
    slices: Mapping[str, Sequence[Any]] | None = None,
) -> bytes:
    """Serialise per-example outcomes to the bytes of ``outcomes.arrow``.

    An Arrow IPC file (Feather v2, zstd-compressed, record batches of ``OUTCOMES_BATCH_ROWS``):
    pandas, polars and R read it, and the server reads it without a decoding step — at 100k rows
    in about 10 ms and a few MB, where Parquet took twice the time and left a worker ~40 MB
    larger. ``candidate`` / ``baseline`` map ``prediction`` (required), ``proba_label``, ``score``
    and ``loss`` (optional) to one value per example.
    """
    import pyarrow as pa

    table = pa.table(outcome_columns(row_id=row_id, label=label, candidate=candidate, baseline=baseline, slices=slices))
    sink = pa.BufferOutputStream()
    write_outcomes(sink, table.schema, table.to_batches())
    return sink.getvalue().to_pybytes()


def outcome_columns(
    *,
    row_id: Sequence[Any],
    label: Sequence[Any],
    candidate: Mapping[str, Sequence[Any]],
    baseline: Mapping[str, Sequence[Any]] | None = None,
    slices: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """The outcomes file's columns by name (``outcomes_table``'s arguments, checked): the one
    definition of what each column holds, shared by every writer of the format."""
    columns: dict[str, Any] = {"row_id": [str(r) for r in row_id], "label": np.asarray(label)}
    for prefix, model in (("candidate", candidate), ("baseline", baseline)):
        if model is None:
            continue
        unknown = set(model) - set(MODEL_FIELDS)
        if unknown or "prediction" not in model:
            raise EvidenceError(f"{prefix}: give 'prediction' and optionally {', '.join(MODEL_FIELDS[1:])} (got {sorted(model)})")
        for field, values in model.items():
            if values is not None:
                columns[f"{prefix}.{field}"] = np.asarray(values)
    for column, values in (slices or {}).items():
        columns[f"slice.{column}"] = np.asarray(values).astype(str)
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise EvidenceError(f"outcome columns differ in length: {lengths}")
    return columns


def write_outcomes(sink, schema, batches) -> int:
    """Write record batches of ``schema`` to ``sink`` (a path or an Arrow output stream) as an
    outcomes file: re-cut into batches of exactly ``OUTCOMES_BATCH_ROWS`` rows (the last one
    shorter), zstd, no schema metadata, each column cast to ``schema``'s type. Holds at most
    about two batches' rows: an evaluator streams millions of rows through it. Returns the
    number of rows written."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    schema = schema.remove_metadata()
    pending, written = pa.Table.from_batches([], schema), 0
    options = ipc.IpcWriteOptions(compression=_OUTCOMES_COMPRESSION)
    with ipc.new_file(sink, schema, options=options) as writer:
        for batch in batches:
            cast = pa.RecordBatch.from_arrays([column.cast(field.type) for column, field in zip(batch.columns, schema)],
                                              schema=schema)
            pending = pa.concat_tables([pending, pa.Table.from_batches([cast], schema)])
            while pending.num_rows >= OUTCOMES_BATCH_ROWS:
                writer.write_batch(_one_batch(pending.slice(0, OUTCOMES_BATCH_ROWS)))
                pending, written = pending.slice(OUTCOMES_BATCH_ROWS), written + OUTCOMES_BATCH_ROWS
        if pending.num_rows:
            writer.write_batch(_one_batch(pending))
            written += pending.num_rows
    return written


def _one_batch(table):
    """A table's rows as one record batch with freshly allocated buffers: a slice or a buffer
    built elsewhere (a Python list, a Parquet page) can carry padding the IPC writer copies, so
    the same rows would make different bytes."""
    import pyarrow as pa

    batch = table.combine_chunks().to_batches()
    batch = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.schema)
    return batch.take(pa.array(range(batch.num_rows), type=pa.int64()))


@dataclass(frozen=True)
class ExampleOutcomes:
    """Per-example outcomes of one evaluation, as ``outcomes_table`` takes them: ``candidate`` and
    ``baseline`` map ``prediction`` (required), ``proba_label``, ``score`` and ``loss`` to one
    value per example; ``baseline`` is None for a first release."""

    row_id: Sequence[Any]
    label: Sequence[Any]
    candidate: Mapping[str, Sequence[Any]]
    baseline: Mapping[str, Sequence[Any]] | None = None
    slices: Mapping[str, Sequence[Any]] | None = None

    def to_arrow(self) -> bytes:
        return outcomes_table(row_id=self.row_id, label=self.label, candidate=self.candidate,
                              baseline=self.baseline, slices=self.slices)


@dataclass(frozen=True)
class OutcomesFile:
    """An outcomes file already written (``write_outcomes``), for an evaluator that streams its
    rows rather than holding them: ``log_evidence`` logs the file as it is, hashing it from disk."""

    path: str
    n_rows: int
    paired: bool
    slice_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvaluatedData:
    """The table an evaluation scored: its name, the full content hash its dataset input carries
    (``gatekeeper.content_hash``) and where it was read from."""

    name: str
    content_hash: str
    source: str = ""


def log_evidence(
    *,
    candidate: tuple[str, str | int],
    baseline: tuple[str, str | int] | None,
    data: EvaluatedData,
    task: str,
    outcomes: ExampleOutcomes | OutcomesFile,
    evaluator: str = "custom",
    run_id: str | None = None,
) -> Manifest:
    """Log evidence to an MLflow run (the active run, or ``run_id``) in the gate's format.

    The run must also have logged the evaluation data as a dataset input tagged with the same
    ``gatekeeper.content_hash`` (``projects.datasets.log_dataset_input`` does this); the gate
    refuses evidence whose data it cannot tie to a logged input.
    """
    import mlflow
    import tempfile
    from pathlib import Path

    paired = outcomes.paired if isinstance(outcomes, OutcomesFile) else outcomes.baseline is not None
    if (baseline is None) == paired:
        raise EvidenceError("give both baseline and baseline outcomes, or neither (first release)")
    if task not in TASKS:
        raise EvidenceError(f"task must be one of {TASKS}, got {task!r}")
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(outcomes, OutcomesFile):
            path, n_rows, slice_columns = Path(outcomes.path), outcomes.n_rows, tuple(outcomes.slice_columns)
        else:
            path, n_rows, slice_columns = Path(tmp) / "outcomes.arrow", len(outcomes.row_id), tuple(outcomes.slices or ())
            path.write_bytes(outcomes.to_arrow())
        manifest = Manifest(
            task=task,
            candidate=VersionRef(candidate[0], str(candidate[1])),
            baseline=VersionRef(baseline[0], str(baseline[1])) if baseline else None,
            data=DataRef(name=data.name, content_hash=data.content_hash, n_rows=n_rows, source=data.source),
            created_at=datetime.now(timezone.utc),
            outcomes_sha256=file_sha256(path),
            slice_columns=slice_columns,
            evaluator=evaluator,
        )
        parse_manifest(json.dumps(manifest.to_dict()))  # refuse to log what the gate would reject
        _write(mlflow.MlflowClient(), run_id or mlflow.active_run().info.run_id, manifest, path)
    return manifest


def file_sha256(path, chunk: int = 2**20) -> str:
    """The sha256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _write(client, run_id: str, manifest: Manifest, path) -> None:
    """The manifest and the outcomes file as artifacts, then the tags the gate finds the run by."""
    import shutil
    import tempfile
    from pathlib import Path

    client.log_text(run_id, json.dumps(manifest.to_dict(), indent=2), EVIDENCE_MANIFEST_PATH)
    name = EVIDENCE_OUTCOMES_PATH.rsplit("/", 1)[1]
    if Path(path).name == name:
        client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    else:  # logged under the name the format fixes
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(path, Path(tmp) / name)
            client.log_artifact(run_id, str(Path(tmp) / name), ARTIFACT_DIR)
    tags = {
        TAG_EVIDENCE: "1",
        TAG_CANDIDATE_NAME: manifest.candidate.name,
        TAG_CANDIDATE_VERSION: manifest.candidate.version,
        TAG_BASELINE_VERSION: manifest.baseline.version if manifest.baseline else NO_BASELINE,
        TAG_DATA_HASH: manifest.data.content_hash,
        TAG_DATA_NAME: manifest.data.name,
    }
    for key, value in tags.items():
        client.set_tag(run_id, key, value)

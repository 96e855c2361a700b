"""What a user may pass as a job's data, resolved once to a table that can be read in batches.

- a Parquet or CSV file: a local path or any URI MLflow's artifact layer reads (``runs:/``,
  ``mlflow-artifacts:/``, ``s3://``, ...), downloaded once;
- an MLflow dataset a run logged as its input: ``dataset:RUN_ID`` (the run logged one dataset) or
  ``dataset:RUN_ID/NAME``. It is read from the source the run recorded, and when the run also
  recorded the table's full content hash (``gatekeeper.content_hash``, as every job of this
  project does), the table read must still have that hash: evaluating "the data run X used" on a
  file that has since changed would be evidence about other data;
- a registered evaluation set: ``set:NAME`` (its current version) or ``set:NAME@VERSION``, resolved
  through the gate (``gatekeeper sets register``) and read from its registered source; the table
  read must have the registered content hash, and the evidence is then named after the set;
- from Python, a ``pandas.DataFrame`` or an ``mlflow.data`` ``PandasDataset``, read from memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from projects.datasets import DataError, local_path, source_uri
from registry_hooks.contract import INPUT_TAG_CONTENT_HASH, INPUT_TAG_SOURCE, SET_DATA_PREFIX

DATASET_SCHEME = "dataset:"
_DATASET_REFERENCE = re.compile(rf"^{DATASET_SCHEME}(?P<run_id>[A-Za-z0-9]+)(?:/(?P<name>.+))?$")
_SET_REFERENCE = re.compile(rf"^{SET_DATA_PREFIX}(?P<name>[^@]+?)(?:@v?(?P<version>[0-9]+))?$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class TableInput:
    """A table ready to read: ``table`` is a local file or a frame in memory (what
    ``projects.datasets.iter_table`` takes); ``source`` is recorded as the dataset's source,
    ``reference`` is what the user passed, ``expected_hash`` is the content hash it must have."""

    table: Path | pd.DataFrame
    source: str
    name: str
    reference: str
    expected_hash: str | None = None
    label: str | None = None  # a registered set's label column: the evaluation must use it

    def check_hash(self, content_hash: str) -> None:
        """Refuse a table whose content is not what the referenced run logged or the set registered."""
        if self.expected_hash and content_hash != self.expected_hash:
            what = "the registered set" if self.label else "the table its run logged"
            raise DataError(
                f"{self.reference} is not {what}: {self.source} now has content hash "
                f"{content_hash[:16]}…, {self.expected_hash[:16]}… was recorded (the file changed since)"
            )


def open_table(data, name: str | None = None, gate=None) -> TableInput:
    """Resolve ``data`` (see the module docstring); ``name`` overrides the dataset name; ``gate``
    (a ``GatekeeperClient``) resolves ``set:`` references."""
    if isinstance(data, pd.DataFrame):
        return TableInput(data, source="in-memory DataFrame", name=name or "dataframe", reference="a DataFrame")
    if _is_pandas_dataset(data):
        source = source_uri(data.source.to_json()) or f"in memory ({type(data.source).__name__})"
        return TableInput(data.df, source=source, name=name or data.name, reference=f"dataset {data.name!r}")
    if not isinstance(data, (str, Path)):
        raise DataError(f"data must be a path, a URI, {DATASET_SCHEME}RUN_ID[/NAME], a DataFrame or an "
                        f"mlflow.data PandasDataset, got {type(data).__name__}")
    text = str(data)
    if text.startswith(DATASET_SCHEME):
        return _logged_dataset(text, name)
    if text.startswith(SET_DATA_PREFIX):
        return _registered_set(text, gate)
    return TableInput(local_path(text), source=text, name=name or _file_name(text), reference=text)


def _logged_dataset(reference: str, name: str | None) -> TableInput:
    from mlflow import MlflowClient

    match = _DATASET_REFERENCE.match(reference)
    if not match:
        raise DataError(f"a dataset reference looks like {DATASET_SCHEME}RUN_ID or {DATASET_SCHEME}RUN_ID/NAME, got {reference!r}")
    run_id, wanted = match["run_id"], match["name"]
    try:
        run = MlflowClient().get_run(run_id)
    except Exception as exc:  # not found, no access, server down
        raise DataError(f"cannot read run {run_id} for {reference}: {exc}") from exc
    inputs = run.inputs.dataset_inputs if run.inputs else []
    names = sorted({i.dataset.name for i in inputs})
    chosen = [i for i in inputs if wanted in (None, i.dataset.name)]
    if not inputs:
        raise DataError(f"run {run_id} logged no dataset inputs, so {reference} names nothing")
    if not chosen:
        raise DataError(f"run {run_id} logged no dataset named {wanted!r}; it logged: {', '.join(names)}")
    if len({i.dataset.digest for i in chosen}) > 1:
        raise DataError(f"run {run_id} logged several datasets ({', '.join(names)}): say which, "
                        f"{DATASET_SCHEME}{run_id}/NAME")
    dataset_input = chosen[0]
    dataset = dataset_input.dataset
    tags = {tag.key: tag.value for tag in dataset_input.tags}
    uri = tags.get(INPUT_TAG_SOURCE) or source_uri(dataset.source)
    if not uri:
        raise DataError(f"dataset {dataset.name!r} of run {run_id} was logged from a {dataset.source_type} source "
                        "that names no file, so it cannot be read back; pass the file itself")
    return TableInput(local_path(uri), source=uri, name=name or dataset.name, reference=reference,
                      expected_hash=tags.get(INPUT_TAG_CONTENT_HASH) or None)


def _registered_set(reference: str, gate) -> TableInput:
    """A registered set's version, read from its source and held to its content hash. The name
    is the set's own (``name`` cannot rename it: the evidence must say which set it is on)."""
    match = _SET_REFERENCE.match(reference)
    if not match:
        raise DataError(f"a set reference looks like {SET_DATA_PREFIX}NAME or {SET_DATA_PREFIX}NAME@VERSION, got {reference!r}")
    if gate is None:
        raise DataError(f"{reference} names a registered evaluation set, which only a gated registry has "
                        "(a tracking URI whose registry is gatekeeper:…)")
    try:
        found = gate.set_version(match["name"].strip(), int(match["version"]) if match["version"] else None)
    except Exception as exc:  # unknown set or version, server unreachable: the gate's message says which
        raise DataError(f"cannot resolve {reference}: {exc}") from exc
    return TableInput(local_path(found["source"]), source=found["source"], name=found["name"], reference=reference,
                      expected_hash=found["content_hash"], label=found["label_column"])


def _is_pandas_dataset(data) -> bool:
    from mlflow.data.pandas_dataset import PandasDataset

    return isinstance(data, PandasDataset)


def _file_name(uri: str) -> str:
    return _SAFE_NAME.sub("_", uri.rstrip("/").rsplit("/", 1)[-1])

"""Tests for registry_hooks.evidence: the manifest, the outcomes table and their validation."""

from __future__ import annotations

import copy
import hashlib
import io
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from registry_hooks.contract import EVIDENCE_FORMAT
from registry_hooks.evidence import (
    DataRef,
    EvidenceError,
    Manifest,
    VersionRef,
    outcomes_table,
    parse_manifest,
    parse_outcomes,
)

DATA_HASH = hashlib.sha256(b"the evaluation data").hexdigest()
N = 200


def manifest_dict(raw: bytes, n_rows: int, *, task="classification", baseline=("churn", "1"), slices=()) -> dict:
    return {
        "format": EVIDENCE_FORMAT,
        "task": task,
        "candidate": {"name": "churn", "version": "2"},
        "baseline": {"name": baseline[0], "version": baseline[1]} if baseline else None,
        "data": {"name": "eval", "content_hash": DATA_HASH, "n_rows": n_rows, "source": "file:///eval.parquet"},
        "created_at": "2024-06-01T12:00:00+00:00",
        "outcomes": {"path": "outcomes.arrow", "sha256": hashlib.sha256(raw).hexdigest()},
        "slice_columns": list(slices),
        "evaluator": "unit-test",
    }


def manifest_for(raw: bytes, n_rows: int, **kwargs) -> Manifest:
    return parse_manifest(json.dumps(manifest_dict(raw, n_rows, **kwargs)))


def arrow_file(columns: dict) -> bytes:
    """Outcomes bytes written directly (not through outcomes_table), for malformed cases."""
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decoded(column) -> np.ndarray:
    """A slice's values, one a row, from its codes and names."""
    return np.asarray(column.names)[column.codes]


def read_back(raw: bytes) -> pa.Table:
    return ipc.open_file(pa.BufferReader(raw)).read_all()


@pytest.fixture
def classification():
    rng = np.random.default_rng(42)
    label = rng.integers(0, 2, N)
    candidate = np.where(rng.random(N) < 0.9, label, 1 - label)
    baseline = np.where(rng.random(N) < 0.8, label, 1 - label)
    return {
        "row_id": [f"r{i}" for i in range(N)],
        "label": label,
        "candidate": {"prediction": candidate, "proba_label": rng.uniform(0.5, 1.0, N), "score": rng.random(N)},
        "baseline": {"prediction": baseline, "proba_label": rng.uniform(0.3, 1.0, N)},
        "slices": {"weather": rng.choice(["clear", "rain", "fog"], N), "hour": rng.integers(0, 3, N)},
    }


# ------------------------------------------------------------------------ round trips


def test_round_trip_classification_with_baseline(classification):
    c = classification
    raw = outcomes_table(row_id=c["row_id"], label=c["label"], candidate=c["candidate"], baseline=c["baseline"], slices=c["slices"])
    manifest = manifest_for(raw, N, slices=("weather", "hour"))
    evidence = parse_outcomes(raw, manifest, "run-1")
    assert evidence.run_id == "run-1" and evidence.manifest is manifest and evidence.n == N
    np.testing.assert_array_equal(evidence.label, c["label"])
    paired = evidence.outcomes
    assert paired is not None and len(paired) == N
    np.testing.assert_array_equal(paired.candidate.prediction, c["candidate"]["prediction"])
    np.testing.assert_array_equal(paired.baseline.prediction, c["baseline"]["prediction"])
    np.testing.assert_allclose(paired.candidate.proba_label, c["candidate"]["proba_label"])
    np.testing.assert_allclose(paired.candidate.score, c["candidate"]["score"])
    np.testing.assert_allclose(paired.baseline.proba_label, c["baseline"]["proba_label"])
    assert paired.baseline.score is None  # optional fields stay absent
    np.testing.assert_array_equal(evidence.candidate_only.prediction, c["candidate"]["prediction"])
    assert set(evidence.slices) == {"weather", "hour"}
    np.testing.assert_array_equal(decoded(evidence.slices["weather"]), c["slices"]["weather"])
    np.testing.assert_array_equal(decoded(evidence.slices["hour"]), c["slices"]["hour"].astype(str))  # slices are strings
    weather = evidence.slices["weather"]
    assert weather.names == ("clear", "fog", "rain") and weather.codes.dtype == np.uint8  # np.unique's order, a byte a row


def test_round_trip_first_release_without_baseline(classification):
    c = classification
    raw = outcomes_table(row_id=c["row_id"], label=c["label"], candidate=c["candidate"])
    manifest = manifest_for(raw, N, baseline=None)
    assert manifest.baseline is None
    evidence = parse_outcomes(raw, manifest, "run-2")
    assert evidence.outcomes is None
    np.testing.assert_array_equal(evidence.candidate_only.prediction, c["candidate"]["prediction"])
    np.testing.assert_array_equal(evidence.label, c["label"])
    assert evidence.slices == {}


def test_round_trip_regression():
    rng = np.random.default_rng(3)
    label = rng.normal(10, 2, N)
    raw = outcomes_table(
        row_id=range(N), label=label,
        candidate={"prediction": label + rng.normal(0, 0.5, N)},
        baseline={"prediction": (label + rng.normal(0, 1.0, N)).astype(np.float32)},
    )
    evidence = parse_outcomes(raw, manifest_for(raw, N, task="regression"), "run-3")
    assert evidence.label.dtype == np.float64
    assert evidence.outcomes.baseline.prediction.dtype == np.float64  # float32 widened
    np.testing.assert_allclose(evidence.label, label)
    assert evidence.manifest.task == "regression"


def test_row_ids_are_stored_as_strings():
    raw = outcomes_table(row_id=[1, 2, 3], label=[0, 1, 0], candidate={"prediction": [0, 1, 1]})
    table = read_back(raw)
    assert table.column("row_id").to_pylist() == ["1", "2", "3"]
    assert set(table.column_names) == {"row_id", "label", "candidate.prediction"}


def test_string_labels_round_trip():
    raw = outcomes_table(
        row_id=range(4), label=["cat", "dog", "cat", "bird"],
        candidate={"prediction": ["cat", "dog", "dog", "bird"]}, baseline={"prediction": ["cat"] * 4},
    )
    evidence = parse_outcomes(raw, manifest_for(raw, 4), "r")
    assert list(evidence.label) == ["cat", "dog", "cat", "bird"]
    assert list(evidence.outcomes.candidate.prediction) == ["cat", "dog", "dog", "bird"]


def test_manifest_to_dict_round_trips(classification):
    raw = outcomes_table(row_id=range(3), label=[0, 1, 0], candidate={"prediction": [0, 1, 1]})
    manifest = manifest_for(raw, 3, slices=("weather",))
    again = parse_manifest(json.dumps(manifest.to_dict()))
    assert again == manifest
    assert manifest.to_dict()["format"] == EVIDENCE_FORMAT
    assert manifest.to_dict()["outcomes"] == {"path": "outcomes.arrow", "sha256": hashlib.sha256(raw).hexdigest()}


def test_first_release_manifest_to_dict_round_trips():
    manifest = Manifest(
        task="regression", candidate=VersionRef("m", "1"), baseline=None,
        data=DataRef("eval", DATA_HASH, 10), created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        outcomes_sha256="0" * 64, slice_columns=(), evaluator="x",
    )
    assert manifest.to_dict()["baseline"] is None
    assert parse_manifest(json.dumps(manifest.to_dict())) == manifest
    assert str(manifest.candidate) == "m v1"


# -------------------------------------------------------------------- outcome defects


def test_sha256_mismatch(classification):
    c = classification
    raw = outcomes_table(row_id=c["row_id"], label=c["label"], candidate=c["candidate"], baseline=c["baseline"])
    manifest = manifest_for(raw, N)
    other = outcomes_table(row_id=c["row_id"], label=1 - c["label"], candidate=c["candidate"], baseline=c["baseline"])
    with pytest.raises(EvidenceError, match="does not match the sha256 in its manifest"):
        parse_outcomes(other, manifest, "r")
    with pytest.raises(EvidenceError, match="changed or truncated"):
        parse_outcomes(raw[:-10], manifest, "r")


def test_not_an_arrow_file():
    raw = b"row_id,label\nr1,1\n"
    with pytest.raises(EvidenceError, match="is not a readable Arrow IPC"):
        parse_outcomes(raw, manifest_for(raw, 1), "r")


@pytest.mark.parametrize("n_rows", [N - 1, N + 1])
def test_wrong_row_count(classification, n_rows):
    c = classification
    raw = outcomes_table(row_id=c["row_id"], label=c["label"], candidate=c["candidate"], baseline=c["baseline"])
    with pytest.raises(EvidenceError, match=f"outcomes hold {N} rows but the manifest's data has {n_rows}"):
        parse_outcomes(raw, manifest_for(raw, n_rows), "r")


def test_duplicate_row_ids():
    raw = outcomes_table(row_id=["a", "b", "a"], label=[0, 1, 0], candidate={"prediction": [0, 1, 1]}, baseline={"prediction": [0, 0, 0]})
    with pytest.raises(EvidenceError, match="row_id has duplicates"):
        parse_outcomes(raw, manifest_for(raw, 3), "r")


def test_empty_outcomes():
    raw = outcomes_table(row_id=[], label=np.array([], dtype=np.int64), candidate={"prediction": np.array([], dtype=np.int64)})
    with pytest.raises(EvidenceError, match="outcomes are empty"):
        parse_outcomes(raw, manifest_for(raw, 0, baseline=None), "r")


@pytest.mark.parametrize("missing", ["row_id", "label"])
def test_missing_required_column(missing):
    columns = {"row_id": ["a", "b"], "label": [0, 1], "candidate.prediction": [0, 1], "baseline.prediction": [1, 1]}
    del columns[missing]
    raw = arrow_file(columns)
    with pytest.raises(EvidenceError, match=f"outcomes lack column '{missing}'"):
        parse_outcomes(raw, manifest_for(raw, 2), "r")


@pytest.mark.parametrize("missing", ["candidate.prediction", "baseline.prediction"])
def test_missing_prediction_column(missing):
    columns = {"row_id": ["a", "b"], "label": [0, 1], "candidate.prediction": [0, 1], "baseline.prediction": [1, 1]}
    del columns[missing]
    raw = arrow_file(columns)
    with pytest.raises(EvidenceError, match=f"outcomes lack column '{missing}'"):
        parse_outcomes(raw, manifest_for(raw, 2), "r")


def test_first_release_needs_no_baseline_columns_but_ignores_them():
    raw = arrow_file({"row_id": ["a", "b"], "label": [0, 1], "candidate.prediction": [0, 1], "baseline.prediction": [1, 1]})
    evidence = parse_outcomes(raw, manifest_for(raw, 2, baseline=None), "r")
    assert evidence.outcomes is None


@pytest.mark.parametrize(
    "field, values",
    [
        ("candidate.proba_label", [0.5, 1.2]),
        ("candidate.proba_label", [-0.1, 0.5]),
        ("candidate.score", [0.5, float("nan")]),
        ("baseline.proba_label", [0.5, float("inf")]),
        ("baseline.score", [2.0, 0.5]),
    ],
)
def test_probabilities_outside_unit_interval(field, values):
    columns = {"row_id": ["a", "b"], "label": [0, 1], "candidate.prediction": [0, 1], "baseline.prediction": [1, 1], field: values}
    raw = arrow_file(columns)
    with pytest.raises(EvidenceError, match=rf"'{field}' must hold probabilities in \[0, 1\]"):
        parse_outcomes(raw, manifest_for(raw, 2), "r")


def test_probabilities_on_the_boundary_are_accepted():
    raw = arrow_file({"row_id": ["a", "b"], "label": [0, 1], "candidate.prediction": [0, 1], "candidate.proba_label": [0.0, 1.0]})
    evidence = parse_outcomes(raw, manifest_for(raw, 2, baseline=None), "r")
    np.testing.assert_array_equal(evidence.candidate_only.proba_label, [0.0, 1.0])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("prefix", ["candidate", "baseline"])
def test_non_finite_regression_predictions(prefix, bad):
    columns = {"row_id": ["a", "b", "c"], "label": [1.0, 2.0, 3.0], "candidate.prediction": [1.0, 2.0, 3.0], "baseline.prediction": [1.5, 2.5, 3.5]}
    columns[f"{prefix}.prediction"][1] = bad
    raw = arrow_file(columns)
    with pytest.raises(EvidenceError, match=f"'{prefix}.prediction' holds NaN or infinite predictions"):
        parse_outcomes(raw, manifest_for(raw, 3, task="regression"), "r")


def test_non_finite_regression_label():
    raw = arrow_file({"row_id": ["a", "b"], "label": [1.0, float("nan")], "candidate.prediction": [1.0, 2.0], "baseline.prediction": [1.0, 2.0]})
    with pytest.raises(EvidenceError, match="'label' holds NaN or infinite values"):
        parse_outcomes(raw, manifest_for(raw, 2, task="regression"), "r")


def test_slice_column_named_in_manifest_but_missing(classification):
    c = classification
    raw = outcomes_table(row_id=c["row_id"], label=c["label"], candidate=c["candidate"], baseline=c["baseline"],
                         slices={"weather": c["slices"]["weather"]})
    with pytest.raises(EvidenceError, match="manifest names slice column 'region' but outcomes lack 'slice.region'"):
        parse_outcomes(raw, manifest_for(raw, N, slices=("weather", "region")), "r")


def test_slice_columns_not_named_in_the_manifest_are_not_used(classification):
    c = classification
    raw = outcomes_table(row_id=c["row_id"], label=c["label"], candidate=c["candidate"], baseline=c["baseline"], slices=c["slices"])
    evidence = parse_outcomes(raw, manifest_for(raw, N, slices=("hour",)), "r")
    assert set(evidence.slices) == {"hour"}


def test_null_row_id_is_an_evidence_error():
    raw = arrow_file({"row_id": pa.array(["a", None, "c"]), "label": [0, 1, 0], "candidate.prediction": [0, 1, 0],
                   "baseline.prediction": [0, 0, 0]})
    with pytest.raises(EvidenceError, match="row_id"):
        parse_outcomes(raw, manifest_for(raw, 3), "r")


def test_null_classification_predictions_are_refused():
    raw = arrow_file({"row_id": ["a", "b", "c", "d"], "label": [1, 0, 1, 0], "candidate.prediction": [1, 0, 1, 0],
                   "baseline.prediction": pa.array([1, None, None, 0], type=pa.int64())})
    with pytest.raises(EvidenceError, match="baseline.prediction"):
        parse_outcomes(raw, manifest_for(raw, 4), "r")


# ------------------------------------------------------------------- outcomes_table API


def test_outcomes_table_rejects_unknown_model_fields():
    with pytest.raises(EvidenceError, match="candidate: give 'prediction'"):
        outcomes_table(row_id=[1], label=[0], candidate={"prediction": [0], "probability": [0.3]})


def test_outcomes_table_requires_a_prediction():
    with pytest.raises(EvidenceError, match="baseline: give 'prediction'"):
        outcomes_table(row_id=[1], label=[0], candidate={"prediction": [0]}, baseline={"proba_label": [0.3]})


def test_outcomes_table_rejects_columns_of_different_length():
    with pytest.raises(EvidenceError, match="outcome columns differ in length"):
        outcomes_table(row_id=[1, 2], label=[0, 1], candidate={"prediction": [0, 1, 1]})
    with pytest.raises(EvidenceError, match="differ in length"):
        outcomes_table(row_id=[1, 2], label=[0, 1], candidate={"prediction": [0, 1]}, slices={"w": ["a"]})


def test_outcomes_table_skips_optional_fields_given_as_none():
    raw = outcomes_table(row_id=[1, 2], label=[0, 1], candidate={"prediction": [0, 1], "proba_label": None})
    assert "candidate.proba_label" not in read_back(raw).column_names


# -------------------------------------------------------------------- manifest defects


@pytest.fixture
def good_manifest() -> dict:
    return manifest_dict(b"x", 10)


def expect_manifest_error(data, fragment: str):
    raw = data if isinstance(data, (str, bytes)) else json.dumps(data)
    with pytest.raises(EvidenceError) as info:
        parse_manifest(raw)
    assert fragment in str(info.value), str(info.value)


def test_good_manifest_parses(good_manifest):
    manifest = parse_manifest(json.dumps(good_manifest))
    assert manifest.candidate == VersionRef("churn", "2") and manifest.baseline == VersionRef("churn", "1")
    assert manifest.data == DataRef("eval", DATA_HASH, 10, "file:///eval.parquet")
    assert manifest.created_at == datetime(2024, 6, 1, 12, tzinfo=timezone.utc)
    assert manifest.evaluator == "unit-test"
    assert parse_manifest(json.dumps(good_manifest).encode()) == manifest  # bytes accepted too


@pytest.mark.parametrize("raw", ["{not json", b"\xff\xfe\x00", ""])
def test_manifest_not_json(raw):
    expect_manifest_error(raw, "is not valid JSON")


@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "null"])
def test_manifest_not_an_object(raw):
    expect_manifest_error(raw, "must hold a JSON object")


@pytest.mark.parametrize("fmt", ["gatekeeper.evidence/2", "", None, "GATEKEEPER.EVIDENCE/1"])
def test_manifest_wrong_format(good_manifest, fmt):
    good_manifest["format"] = fmt
    expect_manifest_error(good_manifest, "format must be 'gatekeeper.evidence/1'")


def test_manifest_missing_format(good_manifest):
    del good_manifest["format"]
    expect_manifest_error(good_manifest, "format must be")


@pytest.mark.parametrize("task", ["ranking", "Classification", ""])
def test_manifest_bad_task(good_manifest, task):
    good_manifest["task"] = task
    expect_manifest_error(good_manifest, "manifest.task must be one of")


@pytest.mark.parametrize("content_hash", ["abc123", DATA_HASH[:63], DATA_HASH + "0", DATA_HASH.upper(), "g" * 64])
def test_manifest_bad_content_hash(good_manifest, content_hash):
    good_manifest["data"]["content_hash"] = content_hash
    expect_manifest_error(good_manifest, "manifest.data.content_hash must be a full SHA-256")


@pytest.mark.parametrize("created_at", ["yesterday", "2024-13-01T00:00:00", "01/06/2024"])
def test_manifest_bad_created_at(good_manifest, created_at):
    good_manifest["created_at"] = created_at
    expect_manifest_error(good_manifest, "manifest.created_at is not an ISO-8601 time")


def test_manifest_created_at_must_be_a_string(good_manifest):
    good_manifest["created_at"] = 1717243200
    expect_manifest_error(good_manifest, "manifest.created_at")


@pytest.mark.parametrize(
    "path, fragment",
    [
        (("task",), "manifest: missing key 'task'"),
        (("data",), "manifest: missing key 'data'"),
        (("outcomes",), "manifest: missing key 'outcomes'"),
        (("created_at",), "created_at"),
        (("candidate",), "manifest.candidate: missing key"),
        (("candidate", "name"), "manifest.candidate: missing key 'name'"),
        (("candidate", "version"), "manifest.candidate: missing key 'version'"),
        (("baseline", "version"), "manifest.baseline: missing key 'version'"),
        (("data", "name"), "manifest.data: missing key 'name'"),
        (("data", "content_hash"), "manifest.data: missing key 'content_hash'"),
        (("data", "n_rows"), "manifest.data: missing key 'n_rows'"),
        (("outcomes", "sha256"), "manifest.outcomes: missing key 'sha256'"),
    ],
)
def test_manifest_missing_keys(good_manifest, path, fragment):
    target = good_manifest
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    expect_manifest_error(good_manifest, fragment)


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        (("data", "n_rows"), "10", "manifest.data.n_rows: expected int"),
        (("data", "n_rows"), True, "manifest.data.n_rows: expected int"),
        (("data", "n_rows"), 10.0, "manifest.data.n_rows: expected int"),
        (("candidate", "version"), True, "manifest.candidate.version"),
        (("candidate", "name"), 7, "manifest.candidate.name: expected str"),
        (("task",), 1, "manifest.task: expected str"),
        (("data",), ["eval"], "manifest.data: expected dict"),
        (("outcomes", "sha256"), None, "manifest.outcomes.sha256: expected str"),
        (("slice_columns",), "weather", "manifest.slice_columns must be a list"),
        (("slice_columns",), ["weather", 3], "manifest.slice_columns must be a list"),
    ],
)
def test_manifest_wrong_types(good_manifest, path, value, fragment):
    target = good_manifest
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    expect_manifest_error(good_manifest, fragment)


def test_manifest_integer_versions_become_strings(good_manifest):
    good_manifest["candidate"]["version"] = 2
    good_manifest["baseline"]["version"] = 1
    manifest = parse_manifest(json.dumps(good_manifest))
    assert manifest.candidate.version == "2" and manifest.baseline.version == "1"


def test_manifest_optional_keys_default(good_manifest):
    for key in ("slice_columns", "evaluator", "baseline"):
        del good_manifest[key]
    del good_manifest["data"]["source"]
    manifest = parse_manifest(json.dumps(good_manifest))
    assert manifest.slice_columns == () and manifest.evaluator == "" and manifest.baseline is None
    assert manifest.data.source == ""


def test_naive_created_at_is_treated_as_utc(good_manifest):
    good_manifest["created_at"] = "2024-06-01T12:00:00"
    created = parse_manifest(json.dumps(good_manifest)).created_at
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert created == datetime(2024, 6, 1, 12, tzinfo=timezone.utc)


def test_created_at_offset_is_kept(good_manifest):
    good_manifest["created_at"] = "2024-06-01T14:00:00+02:00"
    created = parse_manifest(json.dumps(good_manifest)).created_at
    assert created.utcoffset() == timedelta(hours=2)
    assert created == datetime(2024, 6, 1, 12, tzinfo=timezone.utc)  # the same instant


def test_manifest_is_not_modified_by_parsing(good_manifest):
    before = copy.deepcopy(good_manifest)
    parse_manifest(json.dumps(good_manifest))
    assert good_manifest == before


def test_evidence_error_is_a_value_error():
    assert issubclass(EvidenceError, ValueError)


def test_nan_classes_are_an_evidence_error():
    import hashlib
    import json

    from registry_hooks.evidence import EvidenceError, outcomes_table, parse_manifest, parse_outcomes

    for label, prediction in (([0.0, float("nan"), 1.0], [0, 1, 1]), ([0, 1, 1], [0.0, float("nan"), 1.0])):
        raw = outcomes_table(row_id=range(3), label=label, candidate={"prediction": prediction})
        manifest = parse_manifest(json.dumps({
            "format": EVIDENCE_FORMAT, "task": "classification", "candidate": {"name": "m", "version": "1"}, "baseline": None,
            "data": {"name": "d", "content_hash": "0" * 64, "n_rows": 3}, "created_at": "2024-06-01T00:00:00+00:00",
            "outcomes": {"sha256": hashlib.sha256(raw).hexdigest()},
        }))
        with pytest.raises(EvidenceError, match="NaN values: a class label must be a value"):
            parse_outcomes(raw, manifest, "run")


def test_the_outcomes_file_depends_only_on_its_rows_not_on_how_they_were_batched(tmp_path):
    """Two evaluators cutting the same rows differently (one table; uneven parts read back from
    Parquet, as the Spark engine streams them) write the same bytes, in batches of exactly
    OUTCOMES_BATCH_ROWS, with no schema metadata."""
    import pyarrow.parquet as pq

    from registry_hooks.evidence import OUTCOMES_BATCH_ROWS, outcome_columns, write_outcomes

    n = 2 * OUTCOMES_BATCH_ROWS + 1234
    rng = np.random.default_rng(4)
    label = rng.integers(0, 2, n)
    columns = outcome_columns(row_id=[f"r{i}" for i in range(n)], label=label,
                              candidate={"prediction": label, "proba_label": rng.random(n)},
                              slices={"weather": rng.choice(["rain", "clear"], n)})
    raw = outcomes_table(row_id=[f"r{i}" for i in range(n)], label=label,
                         candidate={"prediction": label, "proba_label": columns["candidate.proba_label"]},
                         slices={"weather": columns["slice.weather"]})
    table = pa.table(columns)
    parts = []
    for index, (start, stop) in enumerate([(0, 7), (7, 70_001), (70_001, 70_001), (70_001, n)]):
        path = tmp_path / f"part-{index}.parquet"
        pq.write_table(table.slice(start, stop - start).replace_schema_metadata({b"spark": b"x"}), path)
        parts += pq.ParquetFile(path).iter_batches(batch_size=5000)
    streamed = tmp_path / "outcomes.arrow"
    assert write_outcomes(str(streamed), table.schema, parts) == n
    assert streamed.read_bytes() == raw
    reader = ipc.open_file(pa.BufferReader(raw))
    assert [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)] == [
        OUTCOMES_BATCH_ROWS, OUTCOMES_BATCH_ROWS, 1234]
    assert reader.schema.metadata is None
    parsed = parse_outcomes(raw, manifest_for(raw, n, baseline=None, slices=("weather",)), "run")
    assert parsed.n == n and (parsed.label == label).all()  # read back batch by batch, joined in order
    assert (parsed.candidate_only.proba_label == columns["candidate.proba_label"]).all()
    assert (decoded(parsed.slices["weather"]) == columns["slice.weather"]).all()
    assert parsed.row_ids[-1] == f"r{n - 1}" and parsed.row_ids[OUTCOMES_BATCH_ROWS] == f"r{OUTCOMES_BATCH_ROWS}"


def test_a_missing_label_in_a_later_batch_is_refused():
    from registry_hooks.evidence import OUTCOMES_BATCH_ROWS

    n = OUTCOMES_BATCH_ROWS + 10
    label = pa.array([0] * (n - 1) + [None], type=pa.int64())
    table = pa.table({"row_id": [str(i) for i in range(n)], "label": label, "candidate.prediction": np.zeros(n, dtype=np.int64)})
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=OUTCOMES_BATCH_ROWS)
    raw = sink.getvalue().to_pybytes()
    with pytest.raises(EvidenceError, match="'label' has missing values"):
        parse_outcomes(raw, manifest_for(raw, n, baseline=None), "run")

"""The gatekeeper.drift/1 summary: exact keys, round trip, and a validator that rejects bad documents."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from projects.drift import DriftError, DriftSummary
from projects.drift.tracking import Candidate, DriftOptions, DriftTable, check_drift

CONTRACT_KEYS = {
    "format", "candidate", "created_at", "reference", "current", "n_columns", "n_drifted", "share_drifted",
    "dataset_drift", "columns", "schema_changes", "prediction_drift", "sample_size", "seconds",
}  # fmt: skip
COLUMN_KEYS = {"column", "type", "method", "score", "threshold", "drifted", "missing_share_current"}


@pytest.fixture(scope="module")
def document(windows):
    reference, current = windows
    current = current.drop(columns=["num_same"])  # one schema change
    outcome = check_drift(
        DriftTable(reference, "/data/train.parquet"), DriftTable(current, "/data/window.parquet"),
        Candidate("churn", "3"), DriftOptions(sample_size=2000),
    )  # fmt: skip
    return json.loads(json.dumps(outcome.summary.to_dict(), allow_nan=False))


def test_document_has_the_contract_keys_and_consistent_counts(document):
    assert CONTRACT_KEYS <= set(document)
    assert document["format"] == "gatekeeper.drift/1"
    assert document["candidate"] == {"name": "churn", "version": "3"}
    assert datetime.fromisoformat(document["created_at"]).utcoffset() == timedelta(0)
    for side, rows in (("reference", 20_000), ("current", 15_000)):
        assert document[side]["n_rows"] == rows and len(document[side]["content_hash"]) == 64
    assert document["reference"]["name"] == "train" and document["current"]["source"] == "/data/window.parquet"
    assert all(COLUMN_KEYS <= set(c) for c in document["columns"])
    drifted = [c["column"] for c in document["columns"] if c["drifted"]]
    assert document["n_drifted"] == len(drifted) == 5  # 4 shifted + the missing column
    assert document["n_columns"] == len(document["columns"]) == 11
    assert document["share_drifted"] == pytest.approx(5 / 11)
    assert document["dataset_drift"] is False  # evidently's rule: share >= 0.5
    assert document["schema_changes"] == [
        {"column": "num_same", "change": "missing", "detail": "float64 column absent from the current table"}
    ]
    assert document["sample_size"] == 2000 and document["seconds"] > 0


def test_round_trip(document):
    summary = DriftSummary.from_dict(document)
    assert summary.to_dict() == document
    assert summary.drifted_columns == [c["column"] for c in document["columns"] if c["drifted"]]
    assert summary.age_seconds(datetime.now(timezone.utc) + timedelta(hours=1)) >= 3600


def test_the_gate_parser_reads_it(document):
    gate = pytest.importorskip("registry_hooks.drift_summary")  # the server side, when present
    parsed = gate.parse_drift_summary(json.dumps(document))
    assert parsed.n_drifted == 5 and "num_same" in parsed.drifted_columns


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda d: d.update(format="gatekeeper.drift/2"), "format"),
        (lambda d: d.pop("seconds"), "lacks required keys"),
        (lambda d: d.update(n_drifted=0), "n_drifted disagrees"),
        (lambda d: d.update(share_drifted=0.1), "share_drifted"),
        (lambda d: d.update(dataset_drift=True), "dataset_drift"),
        (lambda d: d["reference"].update(content_hash="abc"), "content_hash"),
        (lambda d: d.update(created_at="2026-11-29T03:40:00"), "UTC offset"),
        (lambda d: d["columns"][0].update(method="magic"), "method"),
        (lambda d: d["columns"][0].update(score="high"), "score"),
        (lambda d: d["columns"][0].update(drifted="yes"), "drifted"),
        (lambda d: d["schema_changes"].append({"column": "num_shift", "change": "renamed", "detail": ""}), "change"),
        (lambda d: d["columns"].append(dict(d["columns"][0])), "n_columns"),
    ],
)
def test_validator_rejects_tampered_documents(document, tamper, message):
    bad = copy.deepcopy(document)
    tamper(bad)
    with pytest.raises(DriftError, match=message):
        DriftSummary.from_dict(bad)

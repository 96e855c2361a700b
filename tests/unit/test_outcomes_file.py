"""Reading outcomes within a bounded memory (registry_hooks.outcomes_file): the budget, the
columns a policy keeps, slices as codes, row ids checked by hash with an exact recheck."""

from __future__ import annotations

import numpy as np
import pytest

from registry_hooks import outcomes_file
from registry_hooks.comparison_checks import columns_kept
from registry_hooks.contract import EVIDENCE_MAX_ROWS_ENV
from registry_hooks.evidence import OUTCOMES_BATCH_ROWS, EvidenceError, outcomes_table, parse_outcomes
from registry_hooks.outcomes_file import DEFAULT_MAX_ROWS, TooManyRows, Wanted, max_rows, within_budget
from registry_hooks.policy import Policy
from tests.unit.test_evidence import arrow_file, manifest_for

N = 300


def classification(rows: int = N, ids=None) -> bytes:
    rng = np.random.default_rng(5)
    label = rng.integers(0, 2, rows)
    return outcomes_table(
        row_id=ids if ids is not None else [f"r{i}" for i in range(rows)], label=label,
        candidate={"prediction": label, "proba_label": rng.uniform(0.5, 1, rows), "score": rng.random(rows),
                   "loss": rng.random(rows)},
        baseline={"prediction": 1 - label, "proba_label": rng.uniform(0, 0.5, rows)},
        slices={"weather": rng.choice(["rain", "clear", "fog"], rows), "hour": rng.integers(0, 24, rows)},
    )


def test_the_budget_comes_from_the_environment_and_a_bad_one_is_an_error():
    assert max_rows({}) == DEFAULT_MAX_ROWS
    assert max_rows({EVIDENCE_MAX_ROWS_ENV: " 5_000 "}) == 5000
    for bad in ("0", "-3", "1e6", "lots"):
        with pytest.raises(ValueError, match=EVIDENCE_MAX_ROWS_ENV):
            max_rows({EVIDENCE_MAX_ROWS_ENV: bad})


def test_evidence_over_the_budget_is_refused_with_the_numbers_and_the_remedy():
    within_budget(5000, 5000)
    with pytest.raises(TooManyRows) as info:
        within_budget(12_345_678, 5000)
    assert isinstance(info.value, EvidenceError)
    assert info.value.numbers == {"rows": 12_345_678, "other_rows": 0, "max_rows": 5000,
                                  "bytes_per_row": outcomes_file.BYTES_PER_ROW,
                                  "budget_mb": round(5000 * outcomes_file.BYTES_PER_ROW / 2**20)}
    message = str(info.value)
    assert "12,345,678 rows" in message and "5,000" in message and EVIDENCE_MAX_ROWS_ENV in message
    assert "engine=spark" in message and "gatekeeper sets register" in message


def test_the_budget_counts_the_other_evidence_a_judgement_reads():
    within_budget(2500, 5000, others=2500)
    with pytest.raises(TooManyRows, match="its 2,501 rows, with the 2,500 of other evidence this judgement reads,"):
        within_budget(2501, 5000, others=2500)


def test_a_policy_keeps_only_the_columns_its_checks_read():
    policy = Policy.from_dict({"defaults": {"primary": {"metric": "accuracy"}, "slices": {"columns": ["weather"]}}})
    assert columns_kept(policy.default) == Wanted(fields=frozenset(), slices=frozenset({"weather"}))
    policy = Policy.from_dict({"defaults": {"secondary": [{"metric": "log_loss", "tolerance": 0.1}],
                                            "slices": {"metric": "roc_auc"}}})
    assert columns_kept(policy.default) == Wanted(fields=frozenset({"proba_label", "score"}), slices=frozenset())


def test_columns_not_kept_are_validated_or_not_read():
    raw = classification()
    manifest = manifest_for(raw, N, slices=("weather", "hour"))
    lean = parse_outcomes(raw, manifest, "r", Wanted(fields=frozenset(), slices=frozenset({"weather"})))
    assert lean.candidate_only.proba_label is None and lean.candidate_only.score is None
    assert set(lean.slices) == {"weather"} and lean.slices["weather"].names == ("clear", "fog", "rain")
    full = parse_outcomes(raw, manifest, "r")
    np.testing.assert_array_equal(lean.label, full.label)
    np.testing.assert_array_equal(lean.outcomes.baseline.prediction, full.outcomes.baseline.prediction)
    assert full.candidate_only.score is not None and set(full.slices) == {"weather", "hour"}

    unused = Wanted(fields=frozenset(), slices=frozenset())
    with pytest.raises(EvidenceError, match="manifest names slice column 'region' but outcomes lack 'slice.region'"):
        parse_outcomes(raw, manifest_for(raw, N, slices=("weather", "region")), "r", unused)

    bad = arrow_file({"row_id": ["a", "b"], "label": [0, 1], "candidate.prediction": [0, 1],
                      "baseline.prediction": [1, 1], "baseline.proba_label": [0.5, 1.5]})
    with pytest.raises(EvidenceError, match=r"'baseline.proba_label' must hold probabilities in \[0, 1\]"):
        parse_outcomes(bad, manifest_for(bad, 2), "r", Wanted(fields=frozenset(), slices=frozenset()))


def test_a_missing_slice_value_is_refused():
    import pyarrow as pa

    raw = arrow_file({"row_id": ["a", "b"], "label": [0, 1], "candidate.prediction": [0, 1],
                      "slice.weather": pa.array(["rain", None])})
    with pytest.raises(EvidenceError, match="'slice.weather' has missing values"):
        parse_outcomes(raw, manifest_for(raw, 2, baseline=None, slices=("weather",)), "r")


def test_row_ids_whose_hashes_collide_are_compared_exactly(monkeypatch):
    """Every id hashed alike: distinct ids still pass (the exact recheck), a duplicate is still found."""
    monkeypatch.setattr(outcomes_file._IdHasher, "__call__", lambda self, column: np.zeros(len(column), dtype=np.uint64))
    raw = classification(50)
    assert parse_outcomes(raw, manifest_for(raw, 50), "r").n == 50
    raw = classification(50, ids=[f"r{i}" for i in range(49)] + ["r7"])
    with pytest.raises(EvidenceError, match="row_id has duplicates"):
        parse_outcomes(raw, manifest_for(raw, 50), "r")


def test_a_duplicate_row_id_in_a_later_batch_is_found():
    rows = OUTCOMES_BATCH_ROWS + 5
    raw = classification(rows, ids=[str(i) for i in range(rows - 1)] + ["3"])
    with pytest.raises(EvidenceError, match="row_id has duplicates"):
        parse_outcomes(raw, manifest_for(raw, rows), "r")



def test_id_hashes_do_not_depend_on_how_the_ids_are_cut_or_typed():
    import pyarrow as pa

    hasher = outcomes_file._IdHasher()
    ids = pa.array([""] + [f"id-{i}-" + "x" * (i % 300) for i in range(5000)])
    whole = hasher(ids)
    assert len(np.unique(whole)) == len(ids)
    np.testing.assert_array_equal(np.concatenate([hasher(ids.slice(0, 1234)), hasher(ids.slice(1234))]), whole)
    np.testing.assert_array_equal(hasher(ids.cast(pa.large_string())), whole)
    hasher._CHUNK_BYTES = 1000  # many small pieces, same hashes
    np.testing.assert_array_equal(hasher(ids), whole)
    np.testing.assert_array_equal(hasher(pa.array([7, 8, 9])), hasher(pa.array(["7", "8", "9"])))


def test_integer_classes_are_kept_in_the_narrowest_type_that_holds_them():
    import pyarrow as pa

    from registry_hooks.evidence import OUTCOMES_BATCH_ROWS

    n = OUTCOMES_BATCH_ROWS + 3
    label = np.zeros(n, dtype=np.int64)
    label[1] = 1
    prediction = label.copy()
    prediction[-1] = 40_000  # in the second batch: widened to int32 there, the first batch's values kept
    raw = outcomes_table(row_id=[str(i) for i in range(n)], label=label, candidate={"prediction": prediction})
    evidence = parse_outcomes(raw, manifest_for(raw, n, baseline=None), "r")
    assert evidence.label.dtype == np.int8 and evidence.candidate_only.prediction.dtype == np.int32
    np.testing.assert_array_equal(evidence.label, label)
    np.testing.assert_array_equal(evidence.candidate_only.prediction, prediction)
    huge = arrow_file({"row_id": ["a", "b"], "label": pa.array([0, 2**63 + 5], type=pa.uint64()),
                       "candidate.prediction": pa.array([-3, 2], type=pa.int16())})
    evidence = parse_outcomes(huge, manifest_for(huge, 2, baseline=None), "r")
    assert evidence.label.dtype == np.uint64 and evidence.label[1] == 2**63 + 5
    assert evidence.candidate_only.prediction.dtype == np.int8 and evidence.candidate_only.prediction[0] == -3

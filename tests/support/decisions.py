"""Decisions built the way the server builds them, for the ``test_decision*`` modules.

Evidence is ``outcomes_table`` bytes plus a manifest, through ``parse_manifest`` /
``parse_outcomes``; drift is a real ``gatekeeper.drift/1`` document. Classification outcomes come
from exact cell counts (both right, candidate-only right, baseline-only right, both wrong) so that
every number a check reports is known in advance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from registry_hooks.checks import Check
from registry_hooks.decision import Baseline, Decision, DriftFinding, EvidenceFinding, decide
from registry_hooks.drift_summary import ColumnDrift, DriftSummary, SchemaChange, TableInfo, parse_drift_summary
from registry_hooks.contract import EVIDENCE_FORMAT
from registry_hooks.evidence import Evidence, VersionRef, outcomes_table, parse_manifest, parse_outcomes
from registry_hooks.policy import ModelPolicy, Policy

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
CANDIDATE = VersionRef("churn", "2")
BASELINE = Baseline("1", "alias 'champion'")
FIRST = Baseline(None, "none (first release)")
DATA_HASH = hashlib.sha256(b"evaluation data v1").hexdigest()
NEWER_HASH = hashlib.sha256(b"evaluation data v2").hexdigest()

# (both right, wins: only the candidate right, losses: only the baseline right, both wrong)
BETTER = (700, 150, 30, 120)  # baseline 0.73, candidate 0.85
WORSE = (700, 30, 150, 120)  # baseline 0.85, candidate 0.73

SLICE_POLICY = {"slices": {"columns": ["weather"], "min_size": 30, "tolerance": 0.05}}


@dataclass(frozen=True)
class About:
    """What an evaluation's manifest claims: which candidate, against which baseline, and when."""

    candidate: VersionRef = CANDIDATE
    baseline: tuple[str, str] | None = ("churn", "1")
    created_at: datetime = NOW - timedelta(hours=1)


def policy(**section) -> ModelPolicy:
    """The effective policy for ``section`` as the defaults, through the real parser."""
    return Policy.from_dict({"version": 1, "defaults": section}).default


def cells(groups: dict[str, tuple[int, int, int, int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Binary labels and predictions with exact cell counts per slice value, shuffled."""
    rng = np.random.default_rng(seed)
    base_ok, cand_ok, group = [], [], []
    for name, (both_right, wins, losses, both_wrong) in groups.items():
        for b, c, k in ((1, 1, both_right), (0, 1, wins), (1, 0, losses), (0, 0, both_wrong)):
            base_ok += [b] * k
            cand_ok += [c] * k
            group += [name] * k
    order = rng.permutation(len(group))
    base_ok, cand_ok, group = np.array(base_ok)[order], np.array(cand_ok)[order], np.array(group)[order]
    label = rng.integers(0, 2, len(group))
    return {
        "label": label,
        "baseline": np.where(base_ok == 1, label, 1 - label),
        "candidate": np.where(cand_ok == 1, label, 1 - label),
        "baseline_ok": base_ok,
        "candidate_ok": cand_ok,
        "group": group,
    }


def build_evidence(label, candidate_outcomes: dict, baseline_outcomes: dict | None, *, slices: dict | None = None,
                   about: About = About()) -> Evidence:
    n = len(label)
    raw = outcomes_table(row_id=range(n), label=label, candidate=candidate_outcomes, baseline=baseline_outcomes, slices=slices)
    manifest = {
        "format": EVIDENCE_FORMAT,
        "task": "classification",
        "candidate": {"name": about.candidate.name, "version": about.candidate.version},
        "baseline": {"name": about.baseline[0], "version": about.baseline[1]} if about.baseline else None,
        "data": {"name": "eval", "content_hash": DATA_HASH, "n_rows": n},
        "created_at": about.created_at.isoformat(),
        "outcomes": {"sha256": hashlib.sha256(raw).hexdigest()},
        "slice_columns": list(slices or ()),
        "evaluator": "unit-test",
    }
    return parse_outcomes(raw, parse_manifest(json.dumps(manifest)), "ev-run")

def from_cells(data: dict, *, slice_column: str | None = None, candidate_proba=None, baseline_proba=None,
               about: About = About()) -> Evidence:
    cand = {"prediction": data["candidate"]}
    base = {"prediction": data["baseline"]}
    if candidate_proba is not None:
        cand["proba_label"] = candidate_proba
    if baseline_proba is not None:
        base["proba_label"] = baseline_proba
    slices = {slice_column: data["group"]} if slice_column else None
    return build_evidence(data["label"], cand, base, slices=slices, about=about)


def finding(
    evidence: Evidence | None,
    *,
    hashes: set[str] | None = None,
    run_time: datetime = NOW - timedelta(hours=1),
    newer: str | None = None,
    error: str | None = None,
    run_id: str = "ev-run",
) -> EvidenceFinding:
    return EvidenceFinding(
        run_id=run_id,
        evidence=evidence,
        error=error,
        logged_data_hashes=frozenset({DATA_HASH} if hashes is None else hashes),
        run_time=run_time,
        newer_data_hash=newer,
    )


def judge(model_policy: ModelPolicy, evidence_finding, *, baseline=BASELINE, drift=None, now=NOW) -> Decision:
    return decide(model_policy, CANDIDATE, baseline, evidence_finding, drift, now)


def check(decision: Decision, name: str) -> Check:
    matches = [c for c in decision.checks if c.name == name]
    assert len(matches) == 1, [c.name for c in decision.checks]
    return matches[0]


def better_finding(**kwargs) -> EvidenceFinding:
    return finding(from_cells(cells({"all": BETTER})), **kwargs)



def first_release_evidence(accuracy_count: int = 850, n: int = 1000, proba: bool = False) -> EvidenceFinding:
    rng = np.random.default_rng(9)
    label = rng.integers(0, 2, n)
    ok = np.zeros(n, int)
    ok[rng.permutation(n)[:accuracy_count]] = 1
    outcomes = {"prediction": np.where(ok == 1, label, 1 - label)}
    if proba:
        outcomes["proba_label"] = np.where(ok == 1, 0.8, 0.3)
    return finding(build_evidence(label, outcomes, None, about=About(baseline=None)))



DRIFT_COLUMNS = ["age", "income", "tenure", "plan", "region", "calls", "visits", "spend", "device", "channel"]


def drift_finding(
    drifted: tuple[str, ...] = (),
    *,
    version: str = "2",
    created_at: datetime = NOW - timedelta(hours=2),
    schema_changes: list | None = None,
    run_id: str = "drift-run",
) -> DriftFinding:
    """A real ``gatekeeper.drift/1`` document (as projects.drift writes it), parsed as the gate does."""
    changes = [SchemaChange(**c) for c in schema_changes or []]
    changed = {c.column for c in changes}
    columns = [
        ColumnDrift(column=c, type="num", method="schema" if c in changed else "wasserstein",
                    score=None if c in changed else (0.3 if c in drifted else 0.01), threshold=0.1,
                    drifted=c in drifted or c in changed, missing_share_current=0.0)
        for c in DRIFT_COLUMNS + sorted(changed - set(DRIFT_COLUMNS))
    ]
    table = TableInfo(name="t", source="s", content_hash="0" * 64, n_rows=1000)
    summary = DriftSummary(candidate_name="churn", candidate_version=version, created_at=created_at.isoformat(),
                           reference=table, current=table, columns=columns, schema_changes=changes)
    return DriftFinding(run_id, parse_drift_summary(json.dumps(summary.to_dict())), None, created_at)


def drift_policy(mode: str = "block", **rules) -> ModelPolicy:
    return policy(drift={"required": True, "mode": mode, "max_share_drifted": 0.3, **rules})


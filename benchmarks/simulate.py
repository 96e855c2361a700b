"""Simulated paired evaluations, judged by the gate through its public evidence path.

Shared by ``benchmarks/bench_calibration.py`` (the calibration tables) and the unit tests (the
same simulation, smaller). Nothing here reaches into the gate's internals: every simulated
evaluation is serialised with ``outcomes_table``, read back with ``parse_manifest`` /
``parse_outcomes`` and judged by ``decide``, as the server does, so a rate measured here is the
rate at which a user would get that verdict.

Why a shared latent difficulty: real models err on the same hard rows, so their errors are
positively correlated and discordant pairs are rarer than for independent models. A study with
independent models would misstate how paired tests behave on real evaluations.

Every replicate draws from its own generator, seeded by the case's name, ``n`` and the replicate's
index: a rerun, or a run split differently across processes, gives the same figures.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import numpy as np
from scipy.special import expit, ndtri

from registry_hooks.checks import Kind, Outcome
from registry_hooks.decision import Baseline, Decision, EvidenceFinding, Verdict, decide
from registry_hooks.evidence import (
    DataRef,
    EvidenceError,
    Manifest,
    VersionRef,
    outcomes_table,
    parse_manifest,
    parse_outcomes,
)
from registry_hooks.policy import ModelPolicy, Policy, PolicyError

SEED = 20240901
NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
CANDIDATE = VersionRef("simulated", "2")
BASELINE = Baseline("1", "simulation")
FIRST_RELEASE = Baseline(None, "none (first release)")
DATA_HASH = hashlib.sha256(b"benchmarks.simulate").hexdigest()
RUN_ID = "simulated-run"

VERDICTS = (Verdict.PROMOTE, Verdict.REFUSE_WORSE, Verdict.REFUSE_INSUFFICIENT)


# ------------------------------------------------------------------------- the public path


def policy(**section: Any) -> ModelPolicy:
    """The effective default policy for ``section``, through the real parser and its checks."""
    return Policy.from_dict({"version": 1, "defaults": section}).default


def accepts(**section: Any) -> bool:
    """Whether the policy parser accepts ``section`` (how a new policy key is detected)."""
    try:
        policy(**section)
    except PolicyError:
        return False
    return True


def finding(
    label: Any,
    candidate: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    *,
    task: str = "classification",
    slices: Mapping[str, Any] | None = None,
) -> EvidenceFinding:
    """Outcome columns as the gate finds them: Arrow bytes and a manifest, parsed by the gate.

    ``baseline=None`` is first-release evidence. The evidence is fresh, about ``CANDIDATE``,
    against ``BASELINE`` (or none), on data whose hash the run logged, so only the statistics
    decide. Evidence the parser refuses becomes an unusable finding carrying the message, as in
    the server's evidence source, so a simulated evaluation always gets a verdict.
    """
    n = len(label)
    raw = outcomes_table(row_id=range(n), label=label, candidate=candidate, baseline=baseline, slices=slices)
    manifest = Manifest(
        task=task,
        candidate=CANDIDATE,
        baseline=VersionRef(CANDIDATE.name, BASELINE.version) if baseline is not None else None,
        data=DataRef("simulated", DATA_HASH, n),
        created_at=NOW - timedelta(hours=1),
        outcomes_sha256=hashlib.sha256(raw).hexdigest(),
        slice_columns=tuple(slices or ()),
        evaluator="benchmarks.simulate",
    )
    try:
        evidence, error = parse_outcomes(raw, parse_manifest(json.dumps(manifest.to_dict())), RUN_ID), None
    except EvidenceError as exc:
        evidence, error = None, str(exc)
    return EvidenceFinding(RUN_ID, evidence, error, frozenset({DATA_HASH}), NOW - timedelta(hours=1))


def judge(model_policy: ModelPolicy, evidence: EvidenceFinding, *, first_release: bool = False) -> Decision:
    """The gate's decision on ``evidence``, with no drift requirement in play."""
    return decide(model_policy, CANDIDATE, FIRST_RELEASE if first_release else BASELINE, evidence, None, NOW)


def outcome(decision: Decision, kind: Kind, metric: str) -> Outcome | None:
    """The outcome of the ``kind`` check of ``metric`` (None when the decision has no such check)."""
    return next((c.outcome for c in decision.checks if (c.kind, c.metric) == (kind, metric)), None)


# --------------------------------------------------------------------------------- worlds


@dataclass(frozen=True)
class Draw:
    """One simulated evaluation: the label and what each model produced, per row."""

    task: str
    label: np.ndarray
    baseline: dict[str, np.ndarray]
    candidate: dict[str, np.ndarray]

    def swapped(self) -> Draw:
        """The same rows with the two models' roles exchanged (a gain becomes a loss)."""
        return Draw(self.task, self.label, self.candidate, self.baseline)

    def finding(self, slices: Mapping[str, Any] | None = None) -> EvidenceFinding:
        return finding(self.label, self.candidate, self.baseline, task=self.task, slices=slices)


@dataclass(frozen=True)
class Classifiers:
    """Two binary classifiers whose mistakes share each row's difficulty.

    A model's latent margin on a row is ``probit(accuracy) + sqrt(shared) * difficulty +
    sqrt(1 - shared) * own noise`` (unit variance): it is right when the margin is positive, so
    with exactly its accuracy for that class, and two models of equal accuracy are exchangeable.
    ``shared`` near 1 makes discordant pairs rare. The probability a model gives the true label
    is ``expit(sharpness * margin)``, so a confident mistake costs a large log loss.
    ``positive_accuracy`` (default: ``accuracy``) lets a low-prevalence world have the usual
    high specificity and lower sensitivity.
    """

    prevalence: float = 0.5
    accuracy: float = 0.8
    positive_accuracy: float | None = None
    shared: float = 0.5
    sharpness: float = 1.7
    task = "classification"

    def draw(self, rng: np.random.Generator, n: int, gain: float = 0.0, error_cut: float = 0.0) -> Draw:
        """The candidate's accuracy in each class is the baseline's with ``error_cut`` of its
        errors removed, plus ``gain`` (accuracy points)."""
        label = (rng.random(n) < self.prevalence).astype(np.int64)
        accuracy = np.where(label == 1, self.positive_accuracy or self.accuracy, self.accuracy)
        improved = 1 - (1 - accuracy) * (1 - error_cut) + gain
        difficulty = np.sqrt(self.shared) * rng.standard_normal(n)
        noise = np.sqrt(1 - self.shared) * rng.standard_normal((2, n))
        models = [self._scored(label, ndtri(acc) + difficulty + own) for acc, own in zip((accuracy, improved), noise)]
        return Draw(self.task, label, *models)

    def _scored(self, label: np.ndarray, margin: np.ndarray) -> dict[str, np.ndarray]:
        proba_label = expit(self.sharpness * margin)
        return {
            "prediction": np.where(margin > 0, label, 1 - label),
            "proba_label": proba_label,
            "score": np.where(label == 1, proba_label, 1 - proba_label),
        }


@dataclass(frozen=True)
class Regressors:
    """Two regressors whose errors share each row's difficulty and a common error component.

    A row's error scale is ``exp(spread * difficulty)`` (heteroscedastic: squared errors are
    heavy-tailed, as in real data); each model's error is that scale times its own scale times
    ``sqrt(shared) * common + sqrt(1 - shared) * own`` noise. Equal scales: exchangeable models.
    """

    scale: float = 1.0
    shared: float = 0.5
    spread: float = 0.5
    task = "regression"

    def draw(self, rng: np.random.Generator, n: int, gain: float = 0.0, error_cut: float = 0.0) -> Draw:
        """The candidate's error scale is the baseline's times ``1 - error_cut``; a ``gain``
        (an absolute margin) has no meaning here and must be 0."""
        if gain:
            raise ValueError("regression worlds simulate margins of 0 only")
        label = rng.normal(0.0, 3.0, n)
        row_scale = np.exp(self.spread * rng.standard_normal(n))
        common = np.sqrt(self.shared) * rng.standard_normal(n)
        noise = np.sqrt(1 - self.shared) * rng.standard_normal((2, n))
        scales = (self.scale, self.scale * (1 - error_cut))
        models = [{"prediction": label + s * row_scale * (common + own)} for s, own in zip(scales, noise)]
        return Draw(self.task, label, *models)


WORLDS: dict[str, Classifiers | Regressors] = {
    "balanced": Classifiers(),
    "prevalence 10%": Classifiers(prevalence=0.1, accuracy=0.95, positive_accuracy=0.7),
    "rare discordance": Classifiers(accuracy=0.95, shared=0.9),
    "regression": Regressors(),
}


#: Share of the baseline's errors the candidate removes in a power run, by task and n. Classifiers
#: of accuracy 0.8 gain +12 / +8 / +5 points at n = 30 / 100 / 1000; regressors shrink their error
#: scale by 30 / 20 / 10 % (mse by 51 / 36 / 19 %). Larger effects at small n keep every column
#: informative: nobody expects 30 rows to show a 1-point gain.
POWER_CUT = {"classification": {30: 0.6, 100: 0.4, 1000: 0.25}, "regression": {30: 0.3, 100: 0.2, 1000: 0.1}}


def power_cut(world: str, n: int) -> float:
    return POWER_CUT[WORLDS[world].task][n]


# ------------------------------------------------------------------------ metric families


@dataclass(frozen=True)
class Family:
    """A primary metric and the margin it must beat; ``name`` labels it in the tables."""

    name: str
    metric: str
    margin: float = 0.0


CLASSIFICATION_FAMILIES = (
    Family("accuracy (McNemar)", "accuracy"),
    Family("accuracy, margin 0.01", "accuracy", 0.01),
    Family("error_rate", "error_rate"),
    Family("log_loss", "log_loss"),
    Family("f1", "f1"),
    Family("precision", "precision"),
    Family("recall", "recall"),
    Family("balanced_accuracy", "balanced_accuracy"),
    Family("roc_auc", "roc_auc"),
)
REGRESSION_FAMILIES = (Family("mae", "mae"), Family("mse", "mse"), Family("rmse", "rmse"))
FAMILIES = {f.name: f for f in CLASSIFICATION_FAMILIES + REGRESSION_FAMILIES}
GUARD_PRIMARY = {"classification": "accuracy", "regression": "mae"}  # cheap; only the secondary is read


def families_of(world: str) -> tuple[Family, ...]:
    return REGRESSION_FAMILIES if WORLDS[world].task == "regression" else CLASSIFICATION_FAMILIES


def seeded(*parts: Any) -> np.random.Generator:
    """A generator determined by ``parts`` alone (names hashed with CRC-32, stable across runs)."""
    return np.random.default_rng([SEED, *(zlib.crc32(str(p).encode()) for p in parts)])


@lru_cache(maxsize=None)
def promotion_policy(metric: str, margin: float) -> ModelPolicy:
    """A policy whose only rule is this primary metric (parsed once: replicates share it)."""
    return policy(primary={"metric": metric, "margin": margin})


@lru_cache(maxsize=None)
def guard_policy(task: str, metric: str, tolerance: float) -> ModelPolicy:
    """A cheap primary that is never read, and ``metric`` as a secondary with ``tolerance``."""
    return policy(primary={"metric": GUARD_PRIMARY[task]}, secondary=[{"metric": metric, "tolerance": tolerance}])


def _null_events(world: str, family: Family, n: int, rep: int, findings: dict) -> dict[str, bool]:
    """One replicate at the null boundary: the candidate is better by exactly the margin.

    ``promote``: the gate promotes under a policy whose only rule is this primary metric;
    ``primary_worse``: that primary check says FAIL_WORSE; ``guard``: a secondary check on the
    metric with tolerance = margin says FAIL_WORSE on the mirrored rows, where the candidate is
    worse by exactly that tolerance (with margin 0, the same rows: equal models).
    """
    key = ("null", family.margin)
    if key not in findings:
        draw = WORLDS[world].draw(seeded(world, n, *key, rep), n, gain=family.margin)
        findings[key] = draw.finding(), (draw.swapped().finding() if family.margin else None)
    found, mirrored = findings[key]
    promoted = judge(promotion_policy(family.metric, family.margin), found)
    guarded = judge(guard_policy(WORLDS[world].task, family.metric, family.margin), mirrored or found)
    return {
        "promote": promoted.verdict == Verdict.PROMOTE,
        "primary_worse": outcome(promoted, Kind.PRIMARY, family.metric) == Outcome.FAIL_WORSE,
        "guard": outcome(guarded, Kind.SECONDARY, family.metric) == Outcome.FAIL_WORSE,
    }


def _power_events(world: str, family: Family, n: int, rep: int, findings: dict) -> dict[str, bool]:
    """One replicate with the candidate removing ``power_cut`` of the baseline's errors."""
    if "power" not in findings:
        draw = WORLDS[world].draw(seeded(world, n, "power", rep), n, error_cut=power_cut(world, n))
        findings["power"] = draw.finding()
    decision = judge(promotion_policy(family.metric, family.margin), findings["power"])
    return {"promote": decision.verdict == Verdict.PROMOTE}


KINDS = {"null": _null_events, "power": _power_events}


def run_families(world: str, n: int, kind: str, reps: range, families: tuple[str, ...] | None = None) -> dict[str, Counter]:
    """Event counts per family over replicates ``reps`` (plus ``reps`` itself under ``"reps"``).

    Families of one world share each replicate's rows (one draw, one parse per margin), so the
    figures of one table row come from the same evaluations as the next.
    """
    chosen = [FAMILIES[name] for name in families] if families else list(families_of(world))
    counts = {f.name: Counter() for f in chosen}
    for rep in reps:
        findings: dict = {}
        for family in chosen:
            counts[family.name].update(KINDS[kind](world, family, n, rep, findings))
            counts[family.name]["reps"] += 1
    return counts


# -------------------------------------------------------------------------------- slices


@dataclass(frozen=True)
class SliceCase:
    """Slices of one column, each ``(rows, candidate accuracy change)`` against a baseline of
    accuracy 0.8 (balanced classes, shared difficulty as in ``Classifiers()``).

    ``refusal_wanted``: whether a correct gate refuses this candidate because of a slice.
    """

    name: str
    segments: tuple[tuple[int, float], ...]
    refusal_wanted: bool

    @property
    def n(self) -> int:
        return sum(rows for rows, _ in self.segments)

    def draw(self, rng: np.random.Generator) -> tuple[Draw, dict[str, np.ndarray]]:
        parts = [Classifiers().draw(rng, rows, gain=change) for rows, change in self.segments]
        merged = Draw(
            "classification",
            np.concatenate([p.label for p in parts]),
            *({k: np.concatenate([getattr(p, side)[k] for p in parts]) for k in parts[0].baseline}
              for side in ("baseline", "candidate")),
        )
        segment = np.repeat([f"s{i}" for i in range(len(parts))], [rows for rows, _ in self.segments])
        return merged, {"segment": segment}


SLICE_CASES = {
    case.name: case
    for case in (
        SliceCase("equal models, 4 x 100", ((100, 0.0),) * 4, False),
        SliceCase("equal models, 10 x 100", ((100, 0.0),) * 10, False),
        SliceCase("+3 points everywhere, 10 x 100", ((100, 0.03),) * 10, False),
        SliceCase("-10 points on a 30-row slice (+3 on 970 rows)", ((30, -0.10), (970, 0.03)), True),
        SliceCase("-5 points on a 100-row slice (+3 on 900 rows)", ((100, -0.05), (900, 0.03)), True),
        SliceCase("-5 points on a 3 % slice of 20k (+3 on 19,400 rows)", ((600, -0.05), (19_400, 0.03)), True),
    )
}


def slice_modes() -> tuple[str, ...]:
    """``detect`` and ``prove`` once the policy accepts ``slices.mode``; until then the rule the
    gate has, called ``current``."""
    modes = ("detect", "prove")
    if all(accepts(slices={"columns": ["segment"], "mode": m}) for m in modes):
        return modes
    return ("current",)


def slice_policy(mode: str) -> ModelPolicy:
    """Primary accuracy (margin 0) and the default slice rule (tolerance, min_size) on ``segment``."""
    section: dict[str, Any] = {"columns": ["segment"]}
    if mode != "current":
        section["mode"] = mode
    return policy(slices=section)


def run_slices(case: str, mode: str, reps: range) -> Counter:
    """Verdict counts and ``by_slices`` (some slice check failed) over replicates ``reps``."""
    spec, rules, counts = SLICE_CASES[case], slice_policy(mode), Counter()
    for rep in reps:
        draw, slices = spec.draw(seeded("slices", case, rep))
        decision = judge(rules, draw.finding(slices))
        failed = [c for c in decision.checks if c.kind == Kind.SLICE and c.outcome.failing]
        counts.update({decision.verdict: 1, "by_slices": bool(failed), "reps": 1})
    return counts


# ----------------------------------------------------------------------------- summaries


def rate(counts: Counter, event: str) -> dict[str, float]:
    """Share of replicates with ``event`` and its Monte-Carlo standard error."""
    reps = counts["reps"]
    p = counts[event] / reps
    return {"rate": p, "se": float(np.sqrt(p * (1 - p) / reps)), "reps": reps}


def null_se(level: float, reps: int) -> float:
    """The Monte-Carlo SE of a rate that is exactly at ``level``: the yardstick for "above"."""
    return float(np.sqrt(level * (1 - level) / reps))

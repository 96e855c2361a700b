"""The statistical checks of usable evidence: primary metric, secondary metrics, slices, and the
absolute floors of a first release.

Every comparison first asks ``sufficiency`` whether there is enough evidence to run it at all,
then tests at one level α = 1 − confidence in both directions and says so: a pass quotes the
one-sided lower bound that clears the margin, a regression the one-sided upper bound below the
tolerance. Classification metrics use one label set for the whole evaluation (the policy's
``evidence.classes``, else the labels present), so a slice never changes how a metric averages.

Slices (``slices.mode``):

- ``detect``: a slice is refused when it is shown worse than the tolerance at the family-wise
  level (Bonferroni over the k slices tested: each at α / k, so equal models are refused by
  slices at most α of the time). Worse in the sample but not significantly: a warning.
- ``prove``: additionally, every slice must be shown within the tolerance: its one-sided lower
  bound above −tolerance at level α. Requiring *every* slice to pass is an intersection–union
  test (Berger 1982): the chance of wrongly passing a slice that is really worse is at most α
  whatever the number of slices, so this direction needs no correction — dividing α by k here
  would only refuse more good candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np

from registry_hooks.checks import Check, Kind, Outcome, SliceRef, check_name, fmt, pct
from registry_hooks.estimators import LabelSet
from registry_hooks.evidence import Evidence
from registry_hooks.outcomes_file import Wanted
from registry_hooks.policy import ModelPolicy
from registry_hooks.statistics import METRICS, Comparison, PairedOutcomes, compare
from registry_hooks.sufficiency import Minimums, shortfall


def evidence_labels(policy: ModelPolicy, evidence: Evidence) -> LabelSet | None:
    """The label set every classification metric of this evaluation uses (None for regression)."""
    if evidence.manifest.task != "classification":
        return None
    positive = policy.evidence.positive_label if policy.evidence.positive_label is not None else 1
    if policy.evidence.classes is None:
        return LabelSet(np.unique(evidence.label), positive)
    declared = np.unique(np.asarray(policy.evidence.classes))
    models = [evidence.candidate_only] + ([evidence.outcomes.baseline] if evidence.outcomes else [])
    for which, values in [("labels", evidence.label)] + [("predictions", m.prediction) for m in models]:
        extra = np.setdiff1d(np.unique(values), declared)
        if extra.size:
            raise ValueError(f"the evidence has {which} {extra.tolist()[:5]} outside the policy's evidence.classes "
                             f"{declared.tolist()[:10]}")
    return LabelSet(declared, positive)


def columns_kept(policy: ModelPolicy) -> Wanted:
    """The optional outcome columns a judgement under ``policy`` reads: the probabilities its
    metrics need (primary, secondary, slices, first-release floors; guard sets and earlier attempts
    use the primary) and its slice columns. The rest of a file is validated, not kept in memory."""
    metrics = {policy.primary.metric, policy.slices.metric or policy.primary.metric}
    metrics |= {t.metric for t in policy.secondary} | {t.metric for t in policy.first_release}
    return Wanted(fields=frozenset(field for metric in metrics for field in METRICS[metric].requires),
                  slices=frozenset(policy.slices.columns))


def _minimums(policy: ModelPolicy) -> Minimums:
    rules = policy.evidence
    return Minimums(rows=rules.min_rows, discordant=rules.min_discordant, per_class=rules.min_per_class)


def _lacking(policy: ModelPolicy, metric: str, outcomes: PairedOutcomes, labels: LabelSet | None, *,
             promotion: bool = False, minimums: Minimums | None = None) -> str | None:
    return shortfall(metric, outcomes, minimums or _minimums(policy), labels.classes if labels else None,
                     labels.positive if labels else None, promotion=promotion)


def _compare(policy: ModelPolicy, metric: str, outcomes: PairedOutcomes, labels: LabelSet | None, *,
             margin: float = 0.0, tolerance: float = 0.0, confidence: float | None = None) -> Comparison:
    return compare(
        metric, outcomes, margin=margin, tolerance=tolerance, confidence=confidence or policy.confidence,
        n_resamples=policy.evidence.bootstrap_resamples,
        positive_label=labels.positive if labels else 1, classes=labels.classes if labels else None,
    )


def _not_a_number(made: partial[Check], c: Comparison) -> Check | None:
    """A NaN passes every comparison (all are false): refuse it instead, with the numbers."""
    values = (c.improvement, c.p_better, c.p_worse)
    if all(math.isfinite(v) for v in values):
        return None
    return made(Outcome.FAIL_INSUFFICIENT,
                f"{c.metric}: the comparison is not a finite number (improvement {c.improvement}, "
                f"p {c.p_better}/{c.p_worse}); the values overflow or the evidence is broken", c.to_dict())


def _summary(c: Comparison) -> str:
    return (f"{c.metric}: candidate {fmt(c.candidate)} vs baseline {fmt(c.baseline)}, "
            f"improvement {fmt(c.improvement)}")


# ------------------------------------------------------------------------------------ primary


def primary_check(policy: ModelPolicy, outcomes: PairedOutcomes, labels: LabelSet | None,
                  worse_elsewhere: list[str]) -> Check:
    """Promote only if the one-sided lower bound clears the margin; ``worse_elsewhere``: the other
    checks that found the candidate worse — then the refusal rests on them, and "evaluate on
    more examples" would be advice that cannot help."""
    threshold = policy.primary
    made, level = partial(Check, Kind.PRIMARY, metric=threshold.metric), pct(policy.confidence)
    lacking = _lacking(policy, threshold.metric, outcomes, labels, promotion=True)
    if lacking:
        return made(Outcome.FAIL_INSUFFICIENT, f"{threshold.metric}: not enough evidence to compare: {lacking}; "
                    "evaluate on more examples", {"n": len(outcomes), "minimum": lacking})
    c = _compare(policy, threshold.metric, outcomes, labels, margin=threshold.margin)
    broken = _not_a_number(made, c)
    if broken:
        return broken
    text = f"{_summary(c)} ({c.method}, n={c.n}, p={c.p_better:.3g})"
    if c.p_better < 1 - policy.confidence:
        return made(Outcome.PASS, f"{text}: one-sided {level} lower bound {fmt(c.ci_low)} ≥ required margin "
                    f"{threshold.margin:g}", c.to_dict())
    if c.ci_high < threshold.margin:
        return made(Outcome.FAIL_WORSE, f"{text}: one-sided {level} upper bound {fmt(c.ci_high)}: does not improve "
                    f"by the required margin {threshold.margin:g}; fix the model, don't re-run", c.to_dict())
    advice = (
        f"the refusal rests on {', '.join(worse_elsewhere)}: fix that first, more examples will not change it"
        if worse_elsewhere else "improve the model; every attempt counts, so evaluating this version again on "
        "other data cannot overturn this result — size an evaluation for the gain you expect before running it"
    )
    return made(Outcome.FAIL_INSUFFICIENT, f"{text}: one-sided {level} bounds [{fmt(c.ci_low)}, {fmt(c.ci_high)}]: "
                f"cannot show an improvement of at least {threshold.margin:g} at {level} confidence; {advice}",
                c.to_dict())


# ---------------------------------------------------------------------------------- secondary


def secondary_checks(policy: ModelPolicy, outcomes: PairedOutcomes, labels: LabelSet | None) -> list[Check]:
    """Each secondary metric may not be worse by more than its tolerance (one-sided, level α)."""
    checks = []
    for threshold in policy.secondary:
        made = partial(Check, Kind.SECONDARY, metric=threshold.metric)
        lacking = _lacking(policy, threshold.metric, outcomes, labels)
        if lacking:
            checks.append(made(Outcome.FAIL_INSUFFICIENT, f"{_name(made)}: not enough evidence to compare: {lacking}",
                               {"n": len(outcomes), "minimum": lacking}))
            continue
        c = _compare(policy, threshold.metric, outcomes, labels, tolerance=threshold.tolerance)
        checks.append(_not_a_number(made, c) or _secondary_verdict(made, c, threshold.tolerance, policy.confidence))
    return checks


def _name(made: partial[Check]) -> str:
    """The name the check ``made`` will have, for its own message (``secondary:log_loss: …``)."""
    return check_name(*made.args, **made.keywords)


def _secondary_verdict(made: partial[Check], c: Comparison, tolerance: float, confidence: float) -> Check:
    name = _name(made)
    text = f"{_summary(c)} (n={c.n}, tolerance {tolerance:g}, one-sided {pct(confidence)} upper bound {fmt(c.ci_high)})"
    if c.p_worse < 1 - confidence:
        return made(Outcome.FAIL_WORSE, f"{name}: regressed beyond tolerance: {text}, p={c.p_worse:.3g}", c.to_dict())
    if c.improvement < -tolerance:
        return made(Outcome.FAIL_INSUFFICIENT, f"{name}: worse than baseline beyond tolerance but not significantly "
                    f"so: {text}; add examples of this case", c.to_dict())
    return made(Outcome.PASS, f"{name}: within tolerance: {text}", c.to_dict())


# -------------------------------------------------------------------------------------- slices


def slice_checks(policy: ModelPolicy, evidence: Evidence, outcomes: PairedOutcomes,
                 labels: LabelSet | None) -> list[Check]:
    spec = policy.slices
    metric = spec.metric or policy.primary.metric
    checks, tested = [], []
    for column in spec.columns:
        values = evidence.slices.get(column)  # codes into a table of the values, in np.unique's order
        if values is None:
            checks.append(Check(
                Kind.SLICE, Outcome.FAIL_INSUFFICIENT,
                f"the policy requires slice column '{column}' but the evidence has none; re-evaluate with slices={column}",
                slice=SliceRef(column),
            ))
            continue
        for code, value in enumerate(values.names):
            made = partial(Check, Kind.SLICE, metric=metric, slice=SliceRef(column, value))
            rows = partial(_rows_of, outcomes, values.codes, code)
            untested = _untested_slice(policy, made, metric, rows(), labels)
            if untested:
                checks.append(untested)
            else:
                tested.append((made, rows))
    return checks + _judge_slices(policy, metric, tested, labels)


def _rows_of(outcomes: PairedOutcomes, codes: np.ndarray, code: int) -> PairedOutcomes:
    """One slice's rows, copied out when judged and dropped after: holding every tested slice's
    copy at once was a second copy of the whole evaluation (~40 bytes a row at 10M rows)."""
    return outcomes.subset(codes == code)


def _untested_slice(policy: ModelPolicy, made: partial[Check], metric: str, part: PairedOutcomes,
                    labels: LabelSet | None) -> Check | None:
    """A slice too small to test (skipped), or one where the metric is undefined (the policy's
    ``untestable`` decides whether that blocks)."""
    spec, size, name = policy.slices, len(part), _name(made)
    if size < spec.min_size:
        return made(Outcome.SKIP, f"{name}: {size} examples, below the minimum {spec.min_size}; not tested", {"n": size})
    lacking = _lacking(policy, metric, part, labels, minimums=Minimums(rows=spec.min_size,
                       per_class=policy.evidence.min_per_class))
    if lacking is None:
        return None
    outcome = Outcome.FAIL_INSUFFICIENT if spec.untestable == "block" else Outcome.SKIP
    return made(outcome, f"{name}: not tested, {metric} is undefined or degenerate here ({lacking}); "
                f"slices.untestable is {spec.untestable!r}", {"n": size, "minimum": lacking})


def _judge_slices(policy: ModelPolicy, metric: str, tested: list[tuple[partial[Check], Callable[[], PairedOutcomes]]],
                  labels: LabelSet | None) -> list[Check]:
    if not tested:
        return []
    k, alpha, spec = len(tested), 1 - policy.confidence, policy.slices
    if METRICS[metric].family == "aggregate" and 1 / (policy.evidence.bootstrap_resamples + 1) >= alpha / k:
        needed = math.ceil(k / alpha)
        return [Check(Kind.SLICES, Outcome.FAIL_INSUFFICIENT,
                      f"slices: {k} slices at confidence {policy.confidence} need resampling p-values below {alpha / k:.2g}, "
                      f"finer than {policy.evidence.bootstrap_resamples} resamples can give; set "
                      f"evidence.bootstrap_resamples to at least {needed}", {"slices_tested": k}, metric=metric)]
    checks = []
    for made, rows in tested:
        part = rows()
        # margin = -tolerance: p_better / ci_low test "within tolerance" (prove), at level α;
        # p_worse / ci_high test "worse than tolerance" at the family-wise level α / k.
        worse = _compare(policy, metric, part, labels, margin=-spec.tolerance, tolerance=spec.tolerance,
                         confidence=1 - alpha / k)
        within = worse if spec.mode == "detect" else _compare(  # p-values are the same; bounds at level α
            policy, metric, part, labels, margin=-spec.tolerance, tolerance=spec.tolerance)
        checks.append(_not_a_number(made, worse) or _slice_verdict(policy, made, within, worse, k))
    return checks


def _slice_verdict(policy: ModelPolicy, made: partial[Check], within: Comparison, worse: Comparison, k: int) -> Check:
    spec, alpha, name = policy.slices, 1 - policy.confidence, _name(made)
    numbers = worse.to_dict() | {
        "mode": spec.mode, "slices_tested": k, "p_worse_adjusted": min(1.0, worse.p_worse * k),
        "ci_low_within": within.to_dict()["ci_low"], "p_within": within.p_better,
    }
    text = f"{_summary(worse)} (n={worse.n}, tolerance {spec.tolerance:g})"
    if worse.p_worse < alpha / k:
        return made(Outcome.FAIL_WORSE, f"{name}: regressed beyond tolerance: {text}; one-sided "
                    f"{pct(1 - alpha / k)} upper bound {fmt(worse.ci_high)} < -{spec.tolerance:g} "
                    f"(Bonferroni over {k} slices, adjusted p={numbers['p_worse_adjusted']:.3g})", numbers)
    if spec.mode == "prove" and within.p_better >= alpha:
        return made(Outcome.FAIL_INSUFFICIENT, f"{name}: cannot show it is within tolerance: {text}; one-sided "
                    f"{pct(policy.confidence)} lower bound {fmt(within.ci_low)} is not above -{spec.tolerance:g}; "
                    "add examples of this case", numbers)
    if spec.mode == "prove":
        return made(Outcome.PASS, f"{name}: shown within tolerance: {text}; one-sided {pct(policy.confidence)} lower "
                    f"bound {fmt(within.ci_low)} > -{spec.tolerance:g}", numbers)
    if worse.improvement < -spec.tolerance:
        return made(Outcome.WARN, f"{name}: worse than tolerance in this sample, not significantly so across {k} "
                    f"slices: {text}", numbers)
    return made(Outcome.PASS, f"{name}: within tolerance: {text}", numbers)


# ------------------------------------------------------------------------------- first release


def first_release_checks(policy: ModelPolicy, evidence: Evidence, labels: LabelSet | None) -> list[Check]:
    if not policy.first_release:
        return [Check(Kind.FIRST_RELEASE, Outcome.PASS, "first release: no absolute thresholds configured")]
    # The statistics module scores pairs; scoring the candidate against itself yields its value.
    alone = PairedOutcomes(label=evidence.label, baseline=evidence.candidate_only, candidate=evidence.candidate_only)
    checks = []
    for threshold in policy.first_release:
        made = partial(Check, Kind.FIRST_RELEASE, metric=threshold.metric)
        lacking = _lacking(policy, threshold.metric, alone, labels)
        if lacking:
            checks.append(made(Outcome.FAIL_INSUFFICIENT, f"first release: not enough evidence for {threshold.metric}: "
                               f"{lacking}; evaluate on more examples", {"n": len(alone), "minimum": lacking}))
            continue
        value = _compare(policy, threshold.metric, alone, labels).candidate
        checks.append(_floor_verdict(made, threshold, value))
    return checks


def _floor_verdict(made: partial[Check], threshold, value: float) -> Check:
    low_ok = threshold.min is None or value >= threshold.min
    high_ok = threshold.max is None or value <= threshold.max
    bounds = " and ".join(text for text in (
        f"≥ {threshold.min:g}" if threshold.min is not None else "",
        f"≤ {threshold.max:g}" if threshold.max is not None else "",
    ) if text)
    outcome = Outcome.PASS if low_ok and high_ok and math.isfinite(value) else Outcome.FAIL_WORSE
    return made(outcome, f"first release: {threshold.metric} = {fmt(value)}, required {bounds}",
                {"value": value, "min": threshold.min, "max": threshold.max})


# ---------------------------------------------------------------------------------- guard sets


def guard_check(policy: ModelPolicy, set_name: str, evidence: Evidence, n_guards: int) -> Check:
    """A further required set (``evaluation.sets[1:]``, e.g. ``hard-cases``): the primary metric
    may not be shown worse than ``slices.tolerance``, Bonferroni over the guard sets like slices
    in ``detect`` mode — a guard catches a known failure coming back, it does not ask for an
    improvement."""
    metric, tolerance = policy.primary.metric, policy.slices.tolerance
    made = partial(Check, Kind.SET, metric=metric, evaluation_set=set_name)
    try:
        labels = evidence_labels(policy, evidence)
    except ValueError as exc:
        return made(Outcome.FAIL_INSUFFICIENT, f"{_name(made)}: evidence run {evidence.run_id} cannot be scored: {exc}")
    lacking = _lacking(policy, metric, evidence.outcomes, labels)
    if lacking:
        return made(Outcome.FAIL_INSUFFICIENT, f"{_name(made)}: not enough evidence to compare: {lacking}; register a "
                    "larger version of the set", {"n": evidence.n, "minimum": lacking})
    alpha = (1 - policy.confidence) / n_guards
    c = _compare(policy, metric, evidence.outcomes, labels, margin=-tolerance, tolerance=tolerance,
                 confidence=1 - alpha)
    text = f"{_summary(c)} (n={c.n}, tolerance {tolerance:g}, run {evidence.run_id})"
    if not math.isfinite(c.improvement) or not math.isfinite(c.p_worse):
        return _not_a_number(made, c)
    if c.p_worse < alpha:
        return made(Outcome.FAIL_WORSE, f"{_name(made)}: regressed beyond tolerance on this guard set: {text}; "
                    f"one-sided {pct(1 - alpha)} upper bound {fmt(c.ci_high)} < -{tolerance:g}", c.to_dict())
    if c.improvement < -tolerance:
        return made(Outcome.WARN, f"{_name(made)}: worse than tolerance in this sample, not significantly: {text}",
                    c.to_dict())
    return made(Outcome.PASS, f"{_name(made)}: within tolerance: {text}", c.to_dict())

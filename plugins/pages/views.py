"""What each page shows, gathered from the gated store: plain data for the templates, no Flask.

Everything comes from the same places the gate and its JSON API read: who holds production from
the registry's tables (``GatekeeperStore.production_state``), decisions from the audit log
(``store.history``; a model page's page, and one row by id, through ``audit.log``), the dry run
from ``store.explain``, runs and the drift summary
through the store's ``EvidenceSource``. Nothing here decides anything: a page shows what the
gate decided and the numbers it decided on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

from plugins.pages import paths
from plugins.pages.svg import Interval, interval_chart
from plugins.params import parse_int
from plugins.registry_store import STAGE_DELETED
from registry_hooks.audit import log as audit
from registry_hooks.audit.models import SqlDecision
from registry_hooks.baseline import Target
from registry_hooks.contract import DRIFT_SUMMARY_PATH
from registry_hooks.decision import Verdict
from registry_hooks.drift_summary import ColumnDrift, parse_drift_summary
from registry_hooks.policy import Policy

PAGE_SIZE = 100  # decisions per model page; older ones are a link away
MAX_ID = 2**63 - 1  # the largest decision id a request may name
VERDICTS = tuple(v.value for v in Verdict)
_OUTCOME_WORDS = {
    "pass": ("✓", "pass"), "warn": ("⚠", "warning"), "skip": ("–", "skipped"),
    "fail_worse": ("✗", "fail: worse"), "fail_insufficient": ("✗", "fail: not enough evidence"),
}


def outcome_label(outcome: str) -> tuple[str, str]:
    return _OUTCOME_WORDS.get(outcome, ("•", outcome))


def when(millis: int | None) -> str:
    """A decision's time as people read it, in UTC so that every reader sees the same."""
    if millis is None:
        return "n/a"
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def not_found(message: str) -> MlflowException:
    return MlflowException(message, RESOURCE_DOES_NOT_EXIST)


def parse_verdict(value: str | None) -> str | None:
    """The model page's filter: empty or absent is every verdict; anything else must be one."""
    if not value:
        return None
    if value not in VERDICTS:
        raise MlflowException(f"Parameter 'verdict' must be one of {', '.join(VERDICTS)}, got {value[:100]!r}.",
                              INVALID_PARAMETER_VALUE)
    return value


# -- the overview ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """One protected target, the version that holds it and the decision that put it there."""

    target: str
    version: str | None
    since: audit.DecisionRecord | None
    others: tuple[str, ...] = ()  # more versions in the same stage (should not happen; shown if it does)


@dataclass(frozen=True)
class Candidate:
    """A version newer than the baseline, with its latest decision if the gate judged it."""

    version: str
    latest: audit.DecisionRecord | None


@dataclass(frozen=True)
class ModelState:
    name: str
    holders: list[Holder]
    baseline: str | None
    last: audit.DecisionRecord | None
    candidates: list[Candidate]
    exists: bool = True


def _targets(store, name: str) -> list[Target]:
    """Every protected target of ``name``'s policy: its aliases and its stages."""
    targets = store.policy.for_model(name).targets
    return [Target("alias", a) for a in targets.aliases] + [Target("stage", s) for s in targets.stages]


def _since(target: Target, version: str | None, history: list[audit.DecisionRecord]) -> audit.DecisionRecord | None:
    """The newest decision that moved ``version`` onto ``target`` (its ``target`` field names it)."""
    if version is None:
        return None
    wanted = str(target)
    return next((r for r in history if r.action in audit.APPROVING_ACTIONS and r.candidate_version == version
                 and wanted in (t.strip() for t in r.target.split(","))), None)


def _versions(store, name: str) -> list[str]:
    with store.ManagedSessionMaker() as session:
        rows = (session.query(SqlModelVersion.version)
                .filter(SqlModelVersion.name == name, SqlModelVersion.current_stage != STAGE_DELETED).all())
    return sorted((str(v) for (v,) in rows), key=int)


def _holders(store, name: str) -> list[Holder]:
    state = store.production_state(name)
    targets = [(t, state.holder(t)) for t in _targets(store, name)]
    with store.ManagedSessionMaker() as session:
        approvals = audit.approvals_of(session, name, {v for _, v in targets if v is not None})
    held = []
    for target, version in targets:
        others = tuple(v for v in state.stages.get(target.name, []) if v != version) if target.kind == "stage" else ()
        held.append(Holder(str(target), version, _since(target, version, approvals), others))
    return held


def model_state(store, name: str) -> ModelState:
    """What holds each protected target of ``name`` now, since when, its last decision, and the
    versions newer than the baseline a new candidate must beat (with their latest verdict)."""
    history = store.history(name, 1)  # 404 for a name neither registered nor in the log
    last = history[0] if history else None
    try:
        baseline = store.baseline(name).version
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return ModelState(name, [], None, last, [], exists=False)  # deleted, log kept
    newer = [v for v in _versions(store, name) if baseline is None or int(v) > int(baseline)]
    with store.ManagedSessionMaker() as session:
        latest = audit.latest_about(session, name, newer) if newer else {}
    candidates = [Candidate(v, latest.get(v)) for v in reversed(newer)]
    return ModelState(name, _holders(store, name), baseline, last, candidates)


def model_names(store, may_read: Callable[[str], bool]) -> list[str]:
    """Every registered model the reader may read, by name."""
    names, token = [], None
    while True:
        page = store.search_registered_models(max_results=1000, page_token=token)
        names += [m.name for m in page if may_read(m.name)]
        token = page.token
        if not token:
            return sorted(names, key=str.casefold)


def overview(store, may_read: Callable[[str], bool]) -> list[ModelState]:
    return [model_state(store, name) for name in model_names(store, may_read)]


# -- a model's decisions --------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryPage:
    """One page of a model's decisions and what the page's links need: the filter and both neighbours."""

    name: str
    records: list[audit.DecisionRecord]
    verdict: str | None
    total: int  # decisions with this verdict (every decision without a filter)
    newer: bool
    older: bool

    def newer_path(self) -> str:
        return paths.model_path(self.name, self.verdict, after=self.records[0].id if self.records else None)

    def older_path(self) -> str:
        return paths.model_path(self.name, self.verdict, before=self.records[-1].id)


def parse_cursor(before: str | None, after: str | None) -> tuple[int | None, int | None]:
    """The model page's cursor: at most one of ``before`` / ``after``, a decision id; empty is absent."""
    before, after = before or None, after or None
    if before is not None and after is not None:
        raise MlflowException("Give at most one of the parameters 'before' and 'after'.", INVALID_PARAMETER_VALUE)
    return (None if before is None else parse_int(before, "before", 1, MAX_ID),
            None if after is None else parse_int(after, "after", 1, MAX_ID))


def history(store, name: str, verdict: str | None, before: int | None = None, after: int | None = None) -> HistoryPage:
    """A page of ``PAGE_SIZE`` decisions, read by an indexed, bounded query whatever the log's length."""
    with store.ManagedSessionMaker() as session:
        found = audit.page(session, name, PAGE_SIZE, verdict=verdict, before=before, after=after)
        total = audit.count(session, name, verdict)
    return HistoryPage(name, found.records, verdict, total, found.newer, found.older)


def decision_record(store, decision_id: int) -> audit.DecisionRecord:
    """One audit row by id; 404 when there is none."""
    with store.ManagedSessionMaker() as session:
        record = audit.get(session, decision_id)
    if record is None:
        raise not_found(f"no decision #{decision_id} in the audit log")
    return record


def decision_model(store, decision_id: int) -> str | None:
    """The model a decision is about (for the page's permission check), or None if there is none."""
    with store.ManagedSessionMaker() as session:
        found = session.query(SqlDecision.model_name).filter(SqlDecision.id == decision_id).one_or_none()
    return None if found is None else found[0]


# -- a decision ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckView:
    name: str
    outcome: str
    icon: str
    words: str
    message: str
    numbers: list[tuple[str, str]]
    chart: str | None


@dataclass(frozen=True)
class RunLink:
    run_id: str
    href: str | None
    note: str | None = None


@dataclass(frozen=True)
class DriftView:
    run: RunLink
    columns: list[ColumnDrift] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class PolicyView:
    recorded_hash: str
    current_hash: str
    source: str
    text: str | None

    @property
    def matches(self) -> bool:
        return self.recorded_hash == self.current_hash


@dataclass(frozen=True)
class DecisionView:
    """A recorded decision, or a dry run (``decision_id`` None), in the one shape the page shows."""

    model: str
    candidate: str | None
    baseline: str | None
    baseline_source: str | None
    verdict: str
    action: str | None
    actor: str | None
    created_at: int | None
    route: str | None
    target: str | None
    reasons: list[str]
    checks: list[CheckView]
    runs: list[RunLink]
    drift: DriftView | None
    policy: PolicyView
    decision_id: int | None = None
    replaced: dict[str, Any] = field(default_factory=dict)
    chain: tuple[str | None, str | None] = (None, None)


def _number_text(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _chart(check: dict[str, Any]) -> str | None:
    """An interval chart for every check that compared the two models (primary: against the
    margin; secondary, slice and guard-set checks: against minus the tolerance)."""
    numbers = check.get("numbers") or {}
    if not {"improvement", "ci_low", "ci_high"} <= set(numbers):
        return None
    primary = check["name"].split(":", 1)[0] == "primary"
    confidence = numbers.get("confidence")
    tolerance = numbers.get("tolerance")
    reference = numbers.get("margin") if primary else (-tolerance if isinstance(tolerance, (int, float)) else None)
    bounds = f"one-sided {confidence * 100:g}% bounds" if isinstance(confidence, (int, float)) else "confidence bounds"
    return interval_chart(Interval(
        estimate=numbers.get("improvement"), low=numbers.get("ci_low"), high=numbers.get("ci_high"),
        reference=reference, reference_label="margin" if primary else "−tolerance",
        title=check["name"], bounds_label=bounds))


def check_views(checks: Iterable[dict[str, Any]]) -> list[CheckView]:
    views = []
    for check in checks:
        icon, words = outcome_label(check.get("outcome", ""))
        numbers = [(k, _number_text(v)) for k, v in (check.get("numbers") or {}).items()]
        views.append(CheckView(check["name"], check.get("outcome", ""), icon, words, check.get("message", ""),
                               numbers, _chart(check)))
    return views


def _run(store, run_id: str) -> tuple[Any, RunLink]:
    """The run (None when it cannot be read) and its MLflow UI page (the link needs its experiment)."""
    try:
        run = store.evidence.tracking_store.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - a purged or unreadable run is shown, unlinked, with why
        return None, RunLink(run_id, None, f"not found in the tracking store ({type(exc).__name__})")
    note = "deleted" if run.info.lifecycle_stage == "deleted" else None
    return run, RunLink(run_id, paths.run_ui_path(run.info.experiment_id, run_id), note)


def run_link(store, run_id: str) -> RunLink:
    return _run(store, run_id)[1]


def drift_view(store, checks: list[dict[str, Any]]) -> DriftView | None:
    """Per-column drift of the run a drift check read, as that run's summary holds it now."""
    check = next((c for c in checks if c["name"] == "drift"), None)
    run_id = (check or {}).get("numbers", {}).get("run_id")
    if not run_id:
        return None
    run, link = _run(store, run_id)
    if run is None:
        return DriftView(link, error="cannot read its drift summary: the run is not in the tracking store")
    try:
        summary = parse_drift_summary(store.evidence.read_artifact(run.info.artifact_uri, DRIFT_SUMMARY_PATH))
    except Exception as exc:  # noqa: BLE001 - the page says why the summary is missing
        return DriftView(link, error=f"cannot read its drift summary: {type(exc).__name__}: {str(exc)[:300]}")
    return DriftView(link, list(summary.columns))


def _policy_text(policy: Policy, model: str) -> str:
    """The policy file as it reads now if it is still the text the server loaded (same hash), else
    the effective rules for ``model`` as the server holds them."""
    import yaml

    try:
        if policy.source.startswith("<") or Policy.load(policy.source).content_hash != policy.content_hash:
            raise ValueError("the file changed or there is none")
        with open(policy.source, encoding="utf-8") as handle:
            return handle.read()
    except Exception:  # noqa: BLE001 - fall back to what the server holds in memory
        return f"# effective policy for {model} ({policy.source})\n" + yaml.safe_dump(
            json.loads(json.dumps(policy.for_model(model).to_dict(), default=list)), sort_keys=False)


def policy_view(store, model: str, recorded_hash: str) -> PolicyView:
    current = store.policy
    text = _policy_text(current, model) if recorded_hash == current.content_hash else None
    return PolicyView(recorded_hash, current.content_hash, current.source, text)


def recorded_view(store, record: audit.DecisionRecord) -> DecisionView:
    return DecisionView(
        model=record.model_name, candidate=record.candidate_version, baseline=record.baseline_version,
        baseline_source=None, verdict=record.verdict, action=record.action, actor=record.actor or "anonymous",
        created_at=record.created_at, route=record.route, target=record.target, reasons=record.reasons,
        checks=check_views(record.checks), runs=[run_link(store, r) for r in record.evidence_run_ids],
        drift=drift_view(store, record.checks), policy=policy_view(store, record.model_name, record.policy_hash),
        decision_id=record.id, replaced=record.replaced, chain=(record.prev_hash, record.row_hash),
    )


def explained_view(store, name: str, version: str) -> DecisionView:
    """The dry run: what a promotion of ``version`` would get now (nothing recorded, nothing moved)."""
    payload = store.explain(name, version).to_dict()
    return DecisionView(
        model=name, candidate=payload["candidate"]["version"], baseline=payload["baseline"]["version"],
        baseline_source=payload["baseline"]["source"], verdict=payload["verdict"], action=None, actor=None,
        created_at=None, route=None, target=None, reasons=payload["reasons"], checks=check_views(payload["checks"]),
        runs=[run_link(store, r) for r in payload["evidence_run_ids"]], drift=drift_view(store, payload["checks"]),
        policy=policy_view(store, name, store.policy.content_hash),
    )

"""The gated registry store: MLflow's SQL registry store with the gate in front of every write
that can change what is in production.

Registered under the URI prefix ``gatekeeper:`` (``gatekeeper:sqlite:///mlflow.db``,
``gatekeeper:postgresql+psycopg2://…``), so the web UI, REST and the Python client all pass through
it. Each gated call checks and writes in one database transaction under a per-model lock (a row
lock on PostgreSQL, an immediate write transaction on SQLite): MLflow's own write code runs inside
that transaction through a re-entrant session maker, so the plugin reuses it instead of copying it.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from mlflow.entities.model_registry.model_version_stages import get_canonical_stage
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_CONFLICT,
    RESOURCE_DOES_NOT_EXIST,
)
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy import text
from sqlalchemy.orm import Session

from plugins import decision_note, notifier, verifier_launch
from plugins.evidence_source import EvidenceSource
from plugins.judging import Judge, required_sets
from plugins.params import parse_int, parse_text, parse_version, require_storable
from plugins.request_context import current_actor, current_route
from registry_hooks import contract, names
from registry_hooks.audit import chain
from registry_hooks.audit import log as audit
from registry_hooks.baseline import ProductionState, Target, find_baseline, promote_targets
from registry_hooks.contract import TAG_PREFIX as RESERVED_TAG_PREFIX
from registry_hooks.decision import Action, Baseline, Decision, Production, RecordedDecision, rolled_back
from registry_hooks.evidence import VersionRef
from registry_hooks.policy import ModelPolicy, Policy
from registry_hooks.secret import server_secret

PROMPT_TAG = "mlflow.prompt.is_prompt"
STAGE_DELETED = "Deleted_Internal"
_TAG_VALUE_LIMIT = 5000


@dataclass(frozen=True)
class _Ask:
    """One gated write as asked: ``mode`` ``gate`` (evidence decides), ``override`` or ``rollback``."""

    name: str
    version: str
    mode: str
    route: str
    reason: str | None


def _refuse(message: str) -> MlflowException:
    return MlflowException(message, error_code=PERMISSION_DENIED)


class GatekeeperStore(SqlAlchemyStore):
    """A SQL registry store that refuses promotions without passing evidence and logs every decision."""

    def __init__(self, db_uri: str, tracking_uri: str | None = None):
        """``tracking_uri`` is what MLflow passes to every registry-store builder; the gate does not
        use it. Inside ``mlflow server`` evidence comes from the server's own tracking store; in
        process (the CLI on a database URI) from the tracking tables of this same database — never
        from the caller's default tracking URI, which would silently create ``./mlflow.db``."""
        super().__init__(db_uri)  # creates MLflow's tables first: ours must come after them
        audit.migrate(self.engine)
        self.secret = server_secret(self.engine)
        self.policy = Policy.from_environment()
        verifier_launch.prestart(self.db_uri, self.policy)  # in `mlflow server`: warm before the first promotion
        self.evidence = EvidenceSource(db_uri)
        self.judge = Judge(self.engine, self.db_uri, self.secret, self.evidence)
        self._active_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
            f"gatekeeper_session_{id(self)}", default=None
        )
        self._base_session_maker = self.ManagedSessionMaker
        self.ManagedSessionMaker = self._reentrant_session

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _reentrant_session(self, read_only: bool = True) -> Iterator[Session]:
        """MLflow's session maker, except that inside a gated transaction it reuses that one."""
        session = self._active_session.get()
        if session is not None:
            yield session
            return
        with self._base_session_maker(read_only=read_only) as session:
            yield session

    @contextmanager
    def _locked(self, name: str) -> Iterator[tuple[Session, SqlRegisteredModel]]:
        """One write transaction holding the per-model lock; MLflow's code called inside joins it."""
        with self._base_session_maker(read_only=False) as session:
            if session.bind.dialect.name == "sqlite":
                session.execute(text("BEGIN IMMEDIATE"))
            model = (
                session.query(SqlRegisteredModel)
                .filter(SqlRegisteredModel.name == name)
                .with_for_update()
                .one_or_none()
            )
            if model is None:
                raise MlflowException(f"Registered Model with name={name} not found", RESOURCE_DOES_NOT_EXIST)
            token = self._active_session.set(session)
            try:
                yield session, model
            finally:
                self._active_session.reset(token)

    # -- reading the registry ------------------------------------------------------------------

    @staticmethod
    def _is_prompt(model: SqlRegisteredModel) -> bool:
        return any(t.key == PROMPT_TAG and t.value.lower() == "true" for t in model.registered_model_tags)

    @staticmethod
    def _state(session: Session, name: str, policy: ModelPolicy) -> ProductionState:
        aliases = session.query(SqlRegisteredModelAlias).filter(SqlRegisteredModelAlias.name == name).all()
        stages = {
            stage: [v for (v,) in session.query(SqlModelVersion.version)
                    .filter(SqlModelVersion.name == name, SqlModelVersion.current_stage == stage).all()]
            for stage in policy.targets.stages
        }
        return ProductionState.read(((row.alias, row.version) for row in aliases), stages, policy.targets)

    @staticmethod
    def _require_model(session: Session, name: str) -> None:
        if session.query(SqlRegisteredModel.name).filter(SqlRegisteredModel.name == name).first() is None:
            raise MlflowException(f"Registered Model with name={name} not found", RESOURCE_DOES_NOT_EXIST)

    def _require_version(self, session: Session, name: str, version: str) -> None:
        self._require_model(session, name)
        if not self._version_exists(session, name, version):
            raise MlflowException(f"Model Version (name={name}, version={version}) not found", RESOURCE_DOES_NOT_EXIST)

    @staticmethod
    def _version_exists(session: Session, name: str, version: str) -> bool:
        return (
            session.query(SqlModelVersion.version)
            .filter(
                SqlModelVersion.name == name,
                SqlModelVersion.version == int(version),
                SqlModelVersion.current_stage != STAGE_DELETED,
            )
            .first()
            is not None
        )

    def _baseline(self, session: Session, name: str, candidate: str, targets: list[Target],
                  state: ProductionState, policy: ModelPolicy) -> Baseline:
        """The production version a candidate must beat (the rule: ``registry_hooks.baseline``)."""
        approved = (v for v in audit.approved_versions(session, name) if self._version_exists(session, name, v))
        return find_baseline(candidate, targets, policy, state, approved)

    def _facts(self, session: Session, name: str, version: str, pending: list[Target], state: ProductionState,
               policy: ModelPolicy) -> tuple[Baseline, Production]:
        """What ``decide`` judges besides the evidence: the baseline, and who holds production."""
        production = Production(
            held=tuple(str(t) for t in state.targets_of(version)),
            requested=tuple(str(t) for t in pending),
            other_holders=frozenset(state.holders() - {version}),
        )
        return self._baseline(session, name, version, pending, state, policy), production

    # -- writing a decision ------------------------------------------------------------------

    def _record(self, session: Session, decision: Decision, action: Action, ask: _Ask, pending: list[Target],
                replaced: dict) -> audit.DecisionRecord:
        """Append the decision to the audit log and mirror it onto the candidate's tags."""
        said = [f"{ask.mode} by {current_actor() or 'anonymous'}: {ask.reason}"] if ask.mode != "gate" else []
        record = audit.append(session, audit.DecisionRecord(
            model_name=decision.candidate.name,
            candidate_version=decision.candidate.version,
            baseline_version=decision.baseline.version,
            action=action.value,
            verdict=decision.verdict.value,
            target=", ".join(str(t) for t in pending),
            route=ask.route,
            actor=current_actor(),
            reasons=said + decision.reasons,
            checks=[c.to_dict() for c in decision.checks],
            evidence_run_ids=list(decision.evidence_run_ids),
            replaced=replaced,
            policy_hash=self.policy.content_hash,
            digests=dict(decision.digests) | {"policy": self.policy.content_hash},
        ), self.secret)
        notifier.enqueue(session, record, self.secret)  # in this transaction: notified iff recorded
        tags = {
            contract.TAG_DECISION_ID: str(record.id),
            contract.TAG_DECISION_URL: decision_note.decision_url(record.id),  # the MLflow UI shows it
            contract.TAG_ACTION: record.action,
            contract.TAG_VERDICT: record.verdict,
            contract.TAG_TARGET: record.target,
            contract.TAG_DECISION_BASELINE: decision.baseline.version or "none",
            contract.TAG_DECIDED_AT: datetime.fromtimestamp(record.created_at / 1000, tz=timezone.utc).isoformat(),
            contract.TAG_ACTOR: record.actor or "anonymous",
            contract.TAG_REASON: "\n".join(record.reasons)[:_TAG_VALUE_LIMIT],
            contract.TAG_EVIDENCE_RUN_IDS: ",".join(decision.evidence_run_ids),
            contract.TAG_POLICY_HASH: self.policy.content_hash,
        }
        rows = [self._with_workspace_field(SqlModelVersionTag(
            name=decision.candidate.name, version=int(decision.candidate.version), key=key, value=value))
            for key, value in tags.items()]
        # Replaced in two statements, not ten merges (a SELECT each): the tags are the gate's own.
        session.query(SqlModelVersionTag).filter(
            SqlModelVersionTag.workspace == rows[0].workspace, SqlModelVersionTag.name == rows[0].name,
            SqlModelVersionTag.version == rows[0].version, SqlModelVersionTag.key.in_(list(tags)),
        ).delete()  # synchronised: a tag row this session loaded earlier leaves its identity map
        session.add_all(rows)
        version = self._get_sql_model_version(session, decision.candidate.name, decision.candidate.version)
        version.description = decision_note.with_line(version.description, (record.id, record.verdict, record.action))
        return record

    def _move(self, session: Session, name: str, version: str, targets: list[Target], state: ProductionState) -> dict:
        """Point every target at ``version``; the previous holders are archived or lose the alias."""
        replaced: dict[str, object] = {}
        for target in targets:
            if target.kind == "alias":
                held = state.aliases.get(target.name)
                if held is not None:
                    replaced[str(target)] = held[1]
                    if held[0] != target.name:  # a case variant: drop it so exactly one holder remains
                        super().delete_registered_model_alias(name, held[0])
                super().set_registered_model_alias(name, target.name, version)
            else:
                others = [v for v in state.stages.get(target.name, []) if v != version]
                replaced[str(target)] = others
                super().transition_model_version_stage(name, version, target.name, archive_existing_versions=True)
        return replaced

    def _pending(self, session: Session, name: str, version: str, targets: list[Target],
                 policy: ModelPolicy) -> tuple[ProductionState, list[Target]]:
        """The production state, and the targets ``version`` does not hold alone yet."""
        self._require_version(session, name, version)
        state = self._state(session, name, policy)
        pending = [t for t in targets if state.holder(t) != version or (t.kind == "stage" and len(state.stages[t.name]) > 1)]
        return state, pending

    _OPTIMISTIC_ATTEMPTS = 3

    def _promote(self, name: str, version: str, targets: list[Target], *, mode: str = "gate",
                 reason: str | None = None) -> RecordedDecision | None:
        """The gated write. ``mode``: ``gate`` (evidence decides), ``override`` or ``rollback``.

        The evidence is read and judged *before* taking the lock (tens of milliseconds, and on
        SQLite the lock stops every writer of the database); under the lock the judgement is used
        only if the facts it was made on (baseline, targets, who holds production) still hold. If
        production moved meanwhile, the lock is released and the candidate judged again; the last
        attempt judges under the lock, so a promotion always ends. Refusals are committed to the
        audit log before the error is raised, so a refused attempt is recorded as surely as an
        approved one.
        """
        ask = _Ask(name, parse_version(version), mode, current_route(mode if mode != "gate" else "in-process"), reason)
        policy = self.policy.for_model(name)
        for attempt in range(self._OPTIMISTIC_ATTEMPTS):
            early = None
            with self.ManagedSessionMaker() as session:
                state, pending = self._pending(session, name, ask.version, targets, policy)
                if not pending:
                    return None  # already there: nothing changes, nothing to decide
                if mode != "rollback":
                    facts = self._facts(session, name, ask.version, pending, state, policy)
                    sets = required_sets(session, policy)
            if mode != "rollback":  # judged outside any transaction: a verification request commits on its own
                early = facts, sets, self.judge.judge(VersionRef(name, ask.version), facts, policy, sets)
            with self._locked(name) as (session, _model):
                state, pending = self._pending(session, name, ask.version, targets, policy)
                if not pending:
                    return None
                last = attempt == self._OPTIMISTIC_ATTEMPTS - 1
                decision = self._current_decision(session, ask, early, pending, state, last)
                if decision is None:
                    continue  # production moved while we judged: release the lock, judge again
                recorded = self._write_decision(session, decision, ask, pending, state)
            if recorded.action == Action.REFUSE:  # the UI's dialog shows this: say where the whole decision is
                raise _refuse(f"{recorded.summary()}\nEvery check with its numbers: {decision_note.decision_url(recorded.decision_id)}")
            return recorded
        raise AssertionError("unreachable: the last attempt always decides")

    def _current_decision(self, session: Session, ask: _Ask, early: tuple | None,
                          pending: list[Target], state: ProductionState, last: bool) -> Decision | None:
        """Under the lock: the early judgement if its facts still hold, a fresh one on the last
        attempt, else None (judge again outside the lock)."""
        if ask.mode == "rollback":
            current = next((state.holder(t) for t in pending if state.holder(t)), None)
            return rolled_back(VersionRef(ask.name, ask.version), current)
        policy = self.policy.for_model(ask.name)
        facts = self._facts(session, ask.name, ask.version, pending, state, policy)
        sets = required_sets(session, policy)
        if (facts, sets) == early[:2]:  # same production, same registered sets: the judgement stands
            return early[2]
        return self.judge.judge(VersionRef(ask.name, ask.version), facts, policy, sets, locked=session) if last else None

    def _write_decision(self, session: Session, decision: Decision, ask: _Ask, pending: list[Target],
                        state: ProductionState) -> RecordedDecision:
        """Apply an approved decision (or an override, or a rollback), and record any decision."""
        action = {"override": Action.OVERRIDE, "rollback": Action.ROLLBACK}.get(
            ask.mode, Action.PROMOTE if decision.approved else Action.REFUSE)
        replaced = self._move(session, ask.name, ask.version, pending, state) if action != Action.REFUSE else {}
        record = self._record(session, decision, action, ask, pending, replaced)
        return RecordedDecision(decision, action, record.id, record.actor)

    # -- the public, gated API -----------------------------------------------------------------

    def _model_is_prompt(self, name: str) -> bool:
        """Prompts are exempt from the gate, but only models created as prompts that never held
        production: not one the audit log records as approved (a name that once went through the
        gate), nor one with a version in a protected stage (prompts have no stages; a model that
        has one was flagged after it reached production, before flag changes were refused)."""
        require_storable(name, "name")  # a NUL in a name would fail inside the query (PostgreSQL): 400, not 500
        with self.ManagedSessionMaker() as session:
            model = session.query(SqlRegisteredModel).filter(SqlRegisteredModel.name == name).one_or_none()
            if model is None or not self._is_prompt(model):
                return False
            if next(iter(audit.approved_versions(session, name)), None) is not None:
                return False
            return not self._state(session, name, self.policy.for_model(name)).holders_of_stages()

    def set_registered_model_alias(self, name, alias, version):
        version = parse_version(version)  # "01", "١" or " 1" must not slip past the holder checks
        targets = self.policy.for_model(name).targets
        canonical = targets.canonical_alias(alias or "")
        if canonical is None:
            self._refuse_imitation(targets, alias or "")
        if canonical is None or self._model_is_prompt(name):
            return super().set_registered_model_alias(name, alias, version)
        self._promote(name, str(version), [Target("alias", canonical)])

    @staticmethod
    def _refuse_imitation(targets, alias: str) -> None:
        """A look-alike of a protected alias would show as a second champion in the UI: refuse it by name."""
        imitated = targets.imitated_alias(alias)
        if imitated is not None:
            raise MlflowException(
                f"alias {alias!r} imitates the protected alias {imitated!r} ({names.describe(alias)}): look-alike "
                f"aliases are refused so that nobody sees a fake {imitated!r}. Promote through the gate to "
                f"{imitated!r}, or choose a clearly different alias.",
                INVALID_PARAMETER_VALUE,
            )

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        version = parse_version(version)
        policy = self.policy.for_model(name)
        canonical = get_canonical_stage(stage)
        if self._model_is_prompt(name):
            return super().transition_model_version_stage(name, version, stage, archive_existing_versions)
        if policy.targets.protects_stage(canonical):
            self._promote(name, str(version), [Target("stage", canonical)])
            return self.get_model_version(name, version)
        with self._locked(name) as (session, _model):
            state = self._state(session, name, policy)
            for target in state.targets_of(str(version)):
                if target.kind == "stage":
                    raise _refuse(
                        f"{name} v{version} is the production version ({target}); moving it to {canonical} would "
                        f"leave production without the gate. Promote a better version (which archives it) or "
                        f"run `gatekeeper rollback {name}`."
                    )
            return super().transition_model_version_stage(name, version, stage, archive_existing_versions)

    def _refuse_if_production(self, session: Session, name: str, versions: set[str] | None, what: str) -> None:
        state = self._state(session, name, self.policy.for_model(name))
        held = {v: state.targets_of(v) for v in state.holders() if versions is None or v in versions}
        if held:
            version, targets = sorted(held.items())[0]
            raise _refuse(
                f"cannot {what}: {name} v{version} holds {', '.join(map(str, targets))}. Production can only "
                f"change through the gate: promote a better version, or run `gatekeeper rollback {name}`."
            )

    def delete_registered_model_alias(self, name, alias):
        canonical = self.policy.for_model(name).targets.canonical_alias(alias or "")
        if canonical is None or self._model_is_prompt(name):
            return super().delete_registered_model_alias(name, alias)
        with self._locked(name) as (session, _model):
            exists = session.query(SqlRegisteredModelAlias).filter(
                SqlRegisteredModelAlias.name == name, SqlRegisteredModelAlias.alias == alias
            ).first()
            if exists is not None:
                raise _refuse(
                    f"cannot delete protected alias {alias!r} of {name} (it points to v{exists.version}): "
                    f"production can only change through the gate; use `gatekeeper rollback {name}`"
                )
            return super().delete_registered_model_alias(name, alias)

    def delete_model_version(self, name, version):
        version = parse_version(version)
        if self._model_is_prompt(name):
            return super().delete_model_version(name, version)
        with self._locked(name) as (session, _model):
            self._refuse_if_production(session, name, {str(version)}, f"delete {name} v{version}")
            return super().delete_model_version(name, version)

    def delete_registered_model(self, name):
        if self._model_is_prompt(name):
            return super().delete_registered_model(name)
        with self._locked(name) as (session, _model):
            self._refuse_if_production(session, name, None, f"delete registered model {name}")
            return super().delete_registered_model(name)

    def rename_registered_model(self, name, new_name):
        if self._model_is_prompt(name):
            return super().rename_registered_model(name, new_name)
        with self._locked(name) as (session, _model):
            self._refuse_if_production(
                session, name, None,
                f"rename {name} (its production aliases and stages would move to {new_name!r}, under "
                f"{new_name!r}'s policy and without its audit history)",
            )
            return super().rename_registered_model(name, new_name)

    # -- reserved tags -------------------------------------------------------------------------

    @staticmethod
    def _is_reserved(key: str) -> bool:
        """A ``gatekeeper.`` key, also when spelled with case, width, spacing or look-alike letters."""
        return (names.normalise(key).startswith(RESERVED_TAG_PREFIX)
                or names.skeleton(key).startswith(names.skeleton(RESERVED_TAG_PREFIX)))

    @classmethod
    def _check_tag_key(cls, key: str) -> None:
        if key is not None and cls._is_reserved(key):
            raise _refuse(f"tags starting with '{RESERVED_TAG_PREFIX}' (in any spelling) are written by the gate only "
                          f"(got {key!r})")

    @staticmethod
    def _check_model_tag_key(name: str, key: str) -> None:
        """Whether a model is a prompt is fixed when it is created: flipping the flag later would
        exempt a gated model from the gate (or drop a prompt's champion into it unaudited)."""
        if key is not None and names.normalise(key) == names.normalise(PROMPT_TAG):
            raise _refuse(
                f"cannot change tag {PROMPT_TAG!r} of existing model {name!r}: whether a model is a prompt is fixed "
                "when it is created (use mlflow.genai.register_prompt for prompts)"
            )

    def set_model_version_tag(self, name, version, tag):
        self._check_tag_key(tag.key)
        return super().set_model_version_tag(name, version, tag)

    def delete_model_version_tag(self, name, version, key):
        self._check_tag_key(key)
        return super().delete_model_version_tag(name, version, key)

    def set_registered_model_tag(self, name, tag):
        self._check_tag_key(tag.key)
        self._check_model_tag_key(name, tag.key)
        return super().set_registered_model_tag(name, tag)

    def delete_registered_model_tag(self, name, key):
        self._check_tag_key(key)
        self._check_model_tag_key(name, key)
        return super().delete_registered_model_tag(name, key)

    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        for tag in tags or []:
            self._check_tag_key(tag.key)
        return super().create_registered_model(name, tags, description, deployment_job_id)

    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None, description=None,
                             local_model_path=None, model_id=None):  # MLflow's signature: 8 parameters, as it is
        if str(source).startswith("models:/"):
            # A copy of another version (MlflowClient.copy_model_version): its gate tags describe
            # decisions about the source, never about the copy, so they are not carried over.
            tags = [t for t in tags or [] if not self._is_reserved(t.key)]
        for tag in tags or []:
            self._check_tag_key(tag.key)
        description = decision_note.without_line(description)  # a new version has no decision yet
        return super().create_model_version(name, source, run_id, tags, run_link, description, local_model_path, model_id)

    def update_model_version(self, name, version, description=None):
        """The user's description under the gate's line, rebuilt from the gate's own tags under the
        model's lock (a decision recorded meanwhile would otherwise be named by a stale line)."""
        require_storable(name, "name")
        if isinstance(description, str):
            require_storable(description, "description")  # a NUL would fail inside PostgreSQL: a 400, not a 500
        with self._locked(name) as (session, _model):
            tags = {t.key: t.value for t in self._get_sql_model_version(session, name, version).model_version_tags}
            decided = tuple(tags.get(key) for key in (contract.TAG_DECISION_ID, contract.TAG_VERDICT, contract.TAG_ACTION))
            description = decision_note.with_line(description, decided if all(decided) else None)
            return super().update_model_version(name, version, description)

    # -- gatekeeper's own operations (the server app's routes and the CLI use these) -------------

    def _promote_targets(self, name: str) -> list[Target]:
        return promote_targets(self.policy.for_model(name))

    def promote(self, name: str, version: str, *, force: bool = False,
                reason: str | None = None) -> RecordedDecision | None:
        """Move ``version`` to every target of the policy's ``promote_to`` in one gated transaction."""
        reason = parse_text(reason, "reason")
        if force:
            if not self.policy.for_model(name).allow_overrides:
                raise _refuse(f"the policy for {name} does not allow overrides")
            if reason is None:
                raise MlflowException("an override needs --reason: it is written to the audit log", INVALID_PARAMETER_VALUE)
        return self._promote(name, version, self._promote_targets(name), mode="override" if force else "gate", reason=reason)

    def explain(self, name: str, version: str) -> Decision:
        """The decision a promotion would get now, changing nothing."""
        version = parse_version(version)
        policy = self.policy.for_model(name)
        targets = self._promote_targets(name)
        with self.ManagedSessionMaker() as session:
            state, pending = self._pending(session, name, version, targets, policy)
            facts = self._facts(session, name, version, pending, state, policy)
            sets = required_sets(session, policy)
        return self.judge.judge(VersionRef(name, version), facts, policy, sets)

    def baseline(self, name: str) -> Baseline:
        """The version a new candidate of ``name`` would be compared with now (the gate's own rule)."""
        policy = self.policy.for_model(name)
        with self.ManagedSessionMaker() as session:
            self._require_model(session, name)
            state = self._state(session, name, policy)
            return self._baseline(session, name, "", self._promote_targets(name), state, policy)

    def production_state(self, name: str) -> ProductionState:
        """Who holds each protected target of ``name`` now, read as the gate reads it."""
        with self.ManagedSessionMaker() as session:
            return self._state(session, name, self.policy.for_model(name))

    def rollback(self, name: str, reason: str | None = None) -> RecordedDecision:
        """Move production back to the version approved before the current one."""
        reason = parse_text(reason, "reason")
        policy = self.policy.for_model(name)
        targets = self._promote_targets(name)
        with self.ManagedSessionMaker() as session:
            self._require_model(session, name)  # unknown model: 404, not "nothing to roll back to"
            state = self._state(session, name, policy)
            current = next((state.holder(t) for t in targets if state.holder(t)), None)
            previous = next(
                (v for v in audit.approved_versions(session, name) if v != current and self._version_exists(session, name, v)),
                None,
            )
        if previous is None:
            raise MlflowException(
                f"nothing to roll back to: the audit log records no other approved version of {name} that still exists",
                RESOURCE_CONFLICT,
            )
        return self._promote(name, previous, targets, mode="rollback", reason=reason or f"roll back from v{current}")

    def history(self, name: str, limit: int | str = 100) -> list[audit.DecisionRecord]:
        """The newest ``limit`` (1..10,000) decisions about ``name``.

        A name that is neither registered nor in the audit log is a 404; a deleted model's
        decisions stay readable (the log is append-only so that they do).
        """
        limit = parse_int(limit, "limit", 1, 10_000)
        with self.ManagedSessionMaker() as session:
            records = audit.history(session, name, limit)
            if not records:
                self._require_model(session, name)
            return records

    def verify_audit(self, name: str | None = None) -> chain.ChainReport:
        """Recompute the audit chain of ``name``, or of every model, from one snapshot of the database.

        Like ``history``, a name that is neither registered nor in the log (nor in its heads:
        a history deleted outside the gate is reported, not a 404) is a 404.
        """
        with self._snapshot() as session:
            report = chain.verify(session, self.secret, name)
            if name is not None and report.rows == 0 and report.ok:
                self._require_model(session, name)
            return report

    @contextmanager
    def _snapshot(self) -> Iterator[Session]:
        """A read-only transaction that sees one state of the database, so that a decision committed
        while the chain is walked does not look like a forged row (PostgreSQL: repeatable read;
        SQLite: a transaction begun before the first read)."""
        with self._base_session_maker() as session:
            if session.get_bind().dialect.name == "sqlite":
                session.execute(text("BEGIN"))
            else:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

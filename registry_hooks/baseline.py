"""Who is in production and which version a candidate must beat: the gate's baseline rule.

One rule for everyone who needs it: the gated store (reading the registry's tables and its audit
log inside a promotion's transaction) and ``evaluate`` against an ungated server (reading the
registry through MLflow's client, with no audit log). Evidence compared against any other version
would be refused as stale, so the two must never disagree. Pure: callers read the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from registry_hooks.decision import Baseline
from registry_hooks.policy import ModelPolicy, Targets

FIRST_RELEASE = "none (first release)"
AUDIT_LOG_SOURCE = "audit log: last approved version"


@dataclass(frozen=True)
class Target:
    """One protected registry target: ``alias`` ``champion`` or ``stage`` ``Production``."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}" if self.kind == "alias" else f"stage {self.name}"


@dataclass(frozen=True)
class ProductionState:
    """Who holds each protected target of one model right now."""

    aliases: dict[str, tuple[str, str]]  # canonical alias -> (stored spelling, version)
    stages: dict[str, list[str]]  # protected stage -> versions in it

    @classmethod
    def read(cls, aliases: Iterable[tuple[str, str]], stages: Mapping[str, Iterable[str]],
             targets: Targets) -> ProductionState:
        """From the model's ``(alias, version)`` pairs and the versions in each protected stage.

        An alias counts under the policy's spelling (``CHAMPION`` holds ``champion``); when both
        spellings exist, the policy's own one is the holder.
        """
        held: dict[str, tuple[str, str]] = {}
        for alias, version in aliases:
            canonical = targets.canonical_alias(alias)
            if canonical is not None and (canonical not in held or alias == canonical):
                held[canonical] = (alias, str(version))
        return cls(aliases=held, stages={stage: [str(v) for v in versions] for stage, versions in stages.items()})

    def holder(self, target: Target) -> str | None:
        if target.kind == "alias":
            held = self.aliases.get(target.name)
            return held[1] if held else None
        versions = self.stages.get(target.name) or []
        return max(versions, key=int) if versions else None

    def targets_of(self, version: str) -> list[Target]:
        held = [Target("alias", a) for a, (_, v) in self.aliases.items() if v == version]
        return held + [Target("stage", s) for s, vs in self.stages.items() if version in vs]

    def holders_of_stages(self) -> set[str]:
        return {v for vs in self.stages.values() for v in vs}

    def holders(self) -> set[str]:
        return {v for _, v in self.aliases.values()} | self.holders_of_stages()


def promote_targets(policy: ModelPolicy) -> list[Target]:
    """What an approved promotion moves: the policy's ``promote_to`` alias and stage."""
    promote_to = policy.promote_to
    return [Target(kind, value) for kind, value in (("alias", promote_to.alias), ("stage", promote_to.stage)) if value]


def find_baseline(candidate: str, targets: list[Target], policy: ModelPolicy, state: ProductionState,
                  approved: Iterable[str] = ()) -> Baseline:
    """The production version ``candidate`` must beat (see docs: 'Baseline').

    The holder of the first of ``targets`` (the promotion's own), then of every other protected
    target, that is not the candidate itself; else the newest version the audit log approved
    (``approved``, newest first, only versions that still exist); else none: a first release.
    """
    protected = [Target("alias", a) for a in policy.targets.aliases] + [Target("stage", s) for s in policy.targets.stages]
    for target in targets + [t for t in protected if t not in targets]:
        holder = state.holder(target)
        if holder is not None and holder != candidate:
            return Baseline(holder, str(target))
    for version in approved:
        if version != candidate:
            return Baseline(version, AUDIT_LOG_SOURCE)
    return Baseline(None, FIRST_RELEASE)

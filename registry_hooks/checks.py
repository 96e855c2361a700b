"""One check of a decision — what it is about, its outcome, message and numbers — and how numbers read.

Shared by the comparison checks (``comparison_checks``) and the decision that gathers them
(``decision``), so neither imports the other's internals.

A check says what it is about in typed fields (``kind``, ``metric``, ``slice``), so a caller
asks ``check.kind is Kind.SLICE`` instead of parsing ``slice:weather=rain:accuracy``; that
string is still its ``name``, derived from the fields, because the audit log, the REST payload
and the messages have always shown it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np


class TextEnum(str, Enum):
    """A str-valued enum that prints, formats and serialises as its value, so JSON, the audit log
    and f-strings keep exactly the strings they had (``enum.StrEnum`` needs Python 3.11)."""

    __str__ = str.__str__
    __format__ = str.__format__


class Outcome(TextEnum):
    PASS = "pass"
    WARN = "warn"
    SKIP = "skip"
    FAIL_WORSE = "fail_worse"
    FAIL_INSUFFICIENT = "fail_insufficient"

    @property
    def failing(self) -> bool:
        return self in (Outcome.FAIL_WORSE, Outcome.FAIL_INSUFFICIENT)


class Kind(TextEnum):
    """What a check judges; the first part of its name."""

    EVIDENCE = "evidence"  # is there usable, fresh evidence (or: is the candidate production already)
    PRIMARY = "primary"  # the primary metric must improve by the margin
    SECONDARY = "secondary"  # a secondary metric may not regress beyond its tolerance
    SLICE = "slice"  # one slice (or a slice column the evidence lacks)
    SLICES = "slices"  # all slices together (e.g. too many for the resamples)
    FIRST_RELEASE = "first_release"  # an absolute floor without a baseline
    DRIFT = "drift"
    ROLLBACK = "rollback"
    SET = "set"  # evidence on a registered evaluation set (coverage, version, or a guard set's regression)
    ATTEMPTS = "attempts"  # every earlier attempt on other data, and agreement between runs on the same data
    VERIFICATION = "verification"  # the outcomes re-scored by a verifier


@dataclass(frozen=True)
class SliceRef:
    """One slice: ``column`` = ``value``; ``value`` None means the column as a whole."""

    column: str
    value: str | None = None

    def __str__(self) -> str:
        return self.column if self.value is None else f"{self.column}={self.value}"


def check_name(kind: Kind, metric: str | None = None, slice: SliceRef | None = None,  # noqa: A002
               evaluation_set: str | None = None) -> str:
    """``kind[:set][:slice][:metric]``, e.g. ``primary:accuracy``, ``slice:weather=rain:accuracy``,
    ``set:hard-cases:accuracy``, ``drift``."""
    parts = [evaluation_set] if evaluation_set else []
    return ":".join([kind.value] + parts + ([str(slice)] if slice else []) + ([metric] if metric else []))


@dataclass(frozen=True)
class Check:
    kind: Kind
    outcome: Outcome
    message: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    metric: str | None = None
    slice: SliceRef | None = None
    evaluation_set: str | None = None  # the registered set a SET or VERIFICATION check is about

    def __post_init__(self) -> None:
        # Frozen fields alone would still let a caller edit the numbers behind a recorded verdict.
        object.__setattr__(self, "numbers", MappingProxyType(dict(self.numbers)))

    @property
    def name(self) -> str:
        return check_name(self.kind, self.metric, self.slice, self.evaluation_set)

    def to_dict(self) -> dict[str, Any]:
        """The audit log's and the REST API's form: the same four keys and strings as always."""
        return {"name": self.name, "outcome": self.outcome.value, "message": self.message, "numbers": dict(self.numbers)}


def pct(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"

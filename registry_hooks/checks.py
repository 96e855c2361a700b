"""One check of a decision — its name, outcome, message and numbers — and how numbers read.

Shared by the comparison checks (``comparison_checks``) and the decision that gathers them
(``decision``), so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PASS, WARN, SKIP = "pass", "warn", "skip"
FAIL_WORSE, FAIL_INSUFFICIENT = "fail_worse", "fail_insufficient"


@dataclass
class Check:
    name: str
    outcome: str
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)


def pct(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"

"""Per-example outcomes of two models scored on the same rows: the unit every paired test needs.

Plain containers with shape checks, shared by the statistics (``statistics``, ``estimators``)
and the evidence parser; no statistics here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True, eq=False)  # eq=False: "==" on arrays is elementwise, not a bool
class ModelOutcomes:
    """What one model produced for each evaluation row (arrays of equal length)."""

    prediction: np.ndarray
    proba_label: np.ndarray | None = None
    score: np.ndarray | None = None

    def __post_init__(self) -> None:
        lengths = {}
        for f in fields(self):
            if (value := getattr(self, f.name)) is not None:
                array = np.asarray(value)
                if array.ndim != 1:
                    raise ValueError(f"ModelOutcomes.{f.name} must be 1-D, got shape {array.shape}")
                object.__setattr__(self, f.name, array)
                lengths[f.name] = len(array)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"ModelOutcomes arrays differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.prediction)

    def subset(self, index: np.ndarray) -> ModelOutcomes:
        """The same model restricted to the rows selected by ``index``."""
        return ModelOutcomes(
            *(None if (v := getattr(self, f.name)) is None else v[index] for f in fields(self))
        )


@dataclass(frozen=True, eq=False)
class PairedOutcomes:
    """Two models scored on the same rows: the unit every paired test needs."""

    label: np.ndarray
    baseline: ModelOutcomes
    candidate: ModelOutcomes

    def __post_init__(self) -> None:
        label = np.asarray(self.label)
        if label.ndim != 1:
            raise ValueError(f"label must be 1-D, got shape {label.shape}")
        object.__setattr__(self, "label", label)
        if not len(self.baseline) == len(self.candidate) == len(label):
            raise ValueError(
                f"rows differ: label {len(label)}, baseline {len(self.baseline)}, "
                f"candidate {len(self.candidate)}; both models must be scored on the same rows"
            )

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, mask: np.ndarray) -> PairedOutcomes:
        """The rows of a slice (boolean mask or integer indices), still paired."""
        index = np.asarray(mask)
        if index.dtype == bool and index.shape != self.label.shape:
            raise ValueError(f"mask has shape {index.shape}, outcomes have {len(self)} rows")
        return PairedOutcomes(self.label[index], self.baseline.subset(index), self.candidate.subset(index))


@dataclass(frozen=True, eq=False)
class SliceCodes:
    """One slice column: each row's value as a code into ``names`` (sorted, each present at least
    once). A code is a byte or two a row, where the values as numpy text took four bytes a character."""

    codes: np.ndarray
    names: tuple[str, ...]

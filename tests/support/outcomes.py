"""Simulated paired outcomes for the statistics tests: models with a known accuracy, skill or
error spread, so a test knows the true difference it should (or should not) find."""

from __future__ import annotations

import math

import numpy as np

from registry_hooks.statistics import ModelOutcomes, PairedOutcomes


def mcnemar_outcomes(both_right: int, wins: int, losses: int, both_wrong: int) -> PairedOutcomes:
    """Accuracy data with a given 2x2 table; wins = candidate right, baseline wrong."""
    cells = [(0, 0, both_right), (1, 0, wins), (0, 1, losses), (1, 1, both_wrong)]
    baseline = np.concatenate([np.full(k, b) for b, _, k in cells])
    candidate = np.concatenate([np.full(k, c) for _, c, k in cells])
    return PairedOutcomes(np.zeros(len(baseline), int), ModelOutcomes(baseline), ModelOutcomes(candidate))


def noisy_classifier(rng: np.random.Generator, label: np.ndarray, accuracy: float) -> np.ndarray:
    """Binary predictions that are right with probability ``accuracy``, independently."""
    return np.where(rng.random(len(label)) < accuracy, label, 1 - label)


def classification(rng: np.random.Generator, n: int, acc_base: float, acc_cand: float) -> PairedOutcomes:
    label = rng.integers(0, 2, n)
    return PairedOutcomes(
        label,
        ModelOutcomes(noisy_classifier(rng, label, acc_base)),
        ModelOutcomes(noisy_classifier(rng, label, acc_cand)),
    )


def probabilistic(rng: np.random.Generator, n: int, skill_base: float, skill_cand: float) -> PairedOutcomes:
    """Binary models whose logit for the true class is N(skill, 1); returns every field."""
    label = rng.integers(0, 2, n)

    def model(skill: float) -> ModelOutcomes:
        p_true = 1 / (1 + np.exp(-rng.normal(skill, 1.0, n)))
        score = np.where(label == 1, p_true, 1 - p_true)
        return ModelOutcomes((score > 0.5).astype(int), p_true, score)

    return PairedOutcomes(label, model(skill_base), model(skill_cand))


def regression(
    rng: np.random.Generator, n: int, sd_base: float, sd_cand: float, shared: float = 0.0
) -> PairedOutcomes:
    """Gaussian errors with standard deviations sd_* (= population rmse) and
    correlation ``shared`` between the two models."""
    label = rng.normal(0, 3, n)
    common = rng.normal(size=n)

    def model(sd: float) -> ModelOutcomes:
        error = math.sqrt(shared) * common + math.sqrt(1 - shared) * rng.normal(size=n)
        return ModelOutcomes(label + sd * error)

    return PairedOutcomes(label, model(sd_base), model(sd_cand))

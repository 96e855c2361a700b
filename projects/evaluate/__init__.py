"""Evaluate a registered model against production and log the gate's evidence (see core.py)."""

from projects.evaluate.core import EvaluationResult, evaluate
from projects.evaluate.scoring import EvaluationError

__all__ = ["EvaluationError", "EvaluationResult", "evaluate"]

"""Strict reading of request fields: the one place that says what a version, a flag or a reason is.

MLflow reads a version with ``int()``, which also takes ``"١"``, ``"１"``, ``" 1"`` and ``"+1"``
and lets 25-digit numbers through to the database (a 500 on SQLite). The gate decides what
production is, so it reads its inputs strictly and answers anything else with MLflow's own 400
``INVALID_PARAMETER_VALUE`` (same message shapes as MLflow's validators), never with a 500.
Used by the gated store (every gated MLflow route reaches it) and by the gate's own routes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.utils.validation import invalid_value, missing_value, not_integer_value

from registry_hooks.names import VERSIONS

# [0-9], not \d or str.isdigit(): both also take other scripts' digits ("١", "１") and "²".
_INTEGER = re.compile(r"-?[0-9]+")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL, and surrogates (json.loads pairs the valid ones)
MAX_REASON_CHARS = 2000
MAX_NAME_CHARS = 256  # MLflow's registered-model name column is a VARCHAR(256)
_ECHO_CHARS = 100  # how much of a bad value an error message repeats


def invalid_parameter(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _echo(value: Any) -> str:
    """A bad value as error messages show it: cut short, so a 5,000-digit input is not echoed whole."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _ECHO_CHARS else f"{text[:_ECHO_CHARS]}… ({len(text)} characters)"


def wrong_type(param: str, value: Any) -> MlflowException:
    return invalid_parameter(invalid_value(param, _echo(value), f" Hint: Value was of type '{type(value).__name__}'."))


def parse_int(value: Any, param: str, low: int, high: int) -> int:
    """A base-10 ASCII integer (a Python int from in-process callers) in ``[low, high]``.

    A digit string longer than any number in range is out of range without asking ``int()``
    (which raises a ValueError of its own past 4,300 digits).
    """
    if value is None:
        raise invalid_parameter(missing_value(param))
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise wrong_type(param, value)
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        raise invalid_parameter(not_integer_value(param, _echo(value)))
    short = isinstance(value, int) or len(value.lstrip("-").lstrip("0")) <= len(str(max(-low, high)))
    if not (short and low <= int(value) <= high):
        raise invalid_parameter(f"Parameter '{param}' must be an integer in [{low}, {high}], got '{_echo(value)}'.")
    return int(value)


def parse_version(value: Any) -> str:
    """A model version in canonical form (``"007"`` -> ``"7"``), so the gate compares the very
    version MLflow will act on. Anything else, including what ``int()`` would still read
    (``"١"``, ``" 1"``, ``"+1"``) and numbers no version can have (``"0"``, ``"-1"``, 25 digits), is a 400.
    """
    return str(parse_int(value, "version", *VERSIONS))


def parse_name(value: Any) -> str:
    """A registered model's name as the gate's routes take it (a longer one cannot exist)."""
    return parse_text(value, "name", required=True, max_chars=MAX_NAME_CHARS)


def parse_flag(value: Any, param: str) -> bool:
    """A JSON boolean; absent or null is False. ``"false"``, ``0`` or ``["x"]`` are refused, not truthy."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid_parameter(invalid_value(param, _echo(value), " It must be a JSON boolean: true or false."))
    return value


def parse_text(value: Any, param: str, *, required: bool = False, max_chars: int = MAX_REASON_CHARS) -> str | None:
    """A non-empty, storable string of at most ``max_chars`` characters; absent or null is None."""
    if value is None:
        if required:
            raise invalid_parameter(missing_value(param))
        return None
    if not isinstance(value, str):
        raise wrong_type(param, value)
    if not value.strip():
        raise invalid_parameter(f"Parameter '{param}' must be a non-empty string.")
    if len(value) > max_chars:
        raise invalid_parameter(f"Parameter '{param}' must be at most {max_chars} characters, got {len(value)}.")
    return require_storable(value, param)


def require_storable(value: str, param: str) -> str:
    """Text a database can hold: PostgreSQL refuses NUL bytes, and an unpaired surrogate is not UTF-8.

    Either would otherwise fail inside the transaction as a 500.
    """
    if not _UNSTORABLE.search(value):
        return value
    raise invalid_parameter(f"Parameter '{param}' must be text without NUL bytes or unpaired surrogates, got '{_echo(value)}'.")


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object; invalid UTF-8, bad JSON and deep nesting are 400.

    Python's decoder raises RecursionError (not ValueError) on deeply nested input, which Flask's
    ``get_json`` lets through as a 500.
    """
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError) as exc:
        raise invalid_parameter(f"the request body is not valid JSON ({type(exc).__name__}): send a JSON object") from None
    if not isinstance(parsed, dict):
        raise invalid_parameter("send a JSON object as the request body")
    return parsed

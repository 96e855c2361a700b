"""The gate's registry of evaluation sets, as the server (and the in-process client) serves it.

Registration records facts the caller computed where the data is (``registry_hooks.eval_sets.
describe_table``: the content hash, rows, columns and keys digest) — the server never reads a
data file in a worker. It need not trust them: before any evidence on a set is accepted, a
verifier re-reads the set's source and checks the hash and keys against this row. Every field is
parsed strictly: a request with an unknown field, a short hash or a label column the table lacks
is a 400 and records nothing.
"""

from __future__ import annotations

import re
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from sqlalchemy.orm import Session

from plugins.params import invalid_parameter, parse_int, parse_text, wrong_type
from registry_hooks import eval_sets
from registry_hooks.transactions import retrying

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = {"name", "source", "label_column", "content_hash", "n_rows", "columns", "keys_digest", "description"}
MAX_SOURCE_CHARS = 4000
MAX_COLUMNS = 100_000


def _digest(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise wrong_type(key, value) if value is not None else invalid_parameter(f"Missing value for required parameter '{key}'.")
    if not _HEX64.match(value):
        raise invalid_parameter(f"Parameter '{key}' must be a full SHA-256: 64 lowercase hex characters.")
    return value


def _columns(value: Any) -> tuple[tuple[str, str], ...]:
    if (not isinstance(value, list) or not value or len(value) > MAX_COLUMNS
            or not all(isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in value)):
        raise invalid_parameter("Parameter 'columns' must be a non-empty list of [name, dtype] string pairs.")
    return tuple((name, dtype) for name, dtype in value)


def parse_registration(params: dict[str, Any]) -> dict[str, Any]:
    """A registration request's fields, every one checked; anything else in the body is refused."""
    unknown = sorted(set(params) - _FIELDS)
    if unknown:
        raise invalid_parameter(f"unknown field(s) {', '.join(unknown)}; a registration takes {', '.join(sorted(_FIELDS))}")
    try:
        name = eval_sets.check_name(params.get("name"))
    except eval_sets.SetError as exc:
        raise invalid_parameter(str(exc)) from None
    columns = _columns(params.get("columns"))
    label = parse_text(params.get("label_column"), "label_column", required=True, max_chars=256)
    if label not in {c for c, _ in columns}:
        raise invalid_parameter(f"label_column {label!r} is not among the table's columns")
    return {
        "name": name,
        "source": parse_text(params.get("source"), "source", required=True, max_chars=MAX_SOURCE_CHARS),
        "label_column": label,
        "facts": eval_sets.TableFacts(
            content_hash=_digest(params, "content_hash"),
            n_rows=parse_int(params.get("n_rows"), "n_rows", 1, 10**12),
            columns=columns,
            keys_digest=_digest(params, "keys_digest"),
        ),
        "description": parse_text(params.get("description"), "description"),
    }


def register(store, params: dict[str, Any], actor: str | None) -> eval_sets.SetVersion:
    """Append the next version of a set (or return the current one if it holds the same table)."""
    fields = parse_registration(params)

    def once() -> eval_sets.SetVersion:
        with Session(store.engine) as session, session.begin():
            return eval_sets.register(session, created_by=actor, **fields)

    return retrying(once)  # two registrations racing for one version number: the loser re-reads


def listing(store, name: Any = None) -> list[eval_sets.SetVersion]:
    """Every version of ``name`` (404 when there is none), or the current version of every set."""
    if name is not None:
        name = parse_text(name, "name", max_chars=eval_sets.MAX_NAME_LENGTH)
    with Session(store.engine) as session:
        found = eval_sets.versions(session, name)
    if name is not None and not found:
        raise MlflowException(f"no evaluation set named {name!r} is registered", RESOURCE_DOES_NOT_EXIST)
    return found

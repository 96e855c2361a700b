"""The private MLflow names the plugin relies on, pinned: an MLflow upgrade that changes one fails
here, by name, instead of as a 500 or a wrong permission on a running server.

Each entry says where the plugin uses it; ../shared/mlflow-3.17-facts.md says why each is needed.
"""

from __future__ import annotations

import inspect

import pytest
from mlflow.server import auth
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

PRIVATE = [
    # plugins/pages/routes.py:_may_read — one user's READ on one model by name, with MLflow's whole rule
    (auth, "_get_registered_model_permission", ["name"]),
    # plugins/registry_store.py — a version row inside the gate's own transaction
    (SqlAlchemyStore, "_get_sql_model_version", ["self", "session", "name", "version", "eager"]),
]


@pytest.mark.parametrize(("owner", "name", "parameters"), PRIVATE, ids=[name for _, name, _ in PRIVATE])
def test_the_private_mlflow_functions_we_call_keep_their_signature(owner, name, parameters):
    function = getattr(owner, name, None)
    assert callable(function), f"MLflow no longer has {owner.__name__}.{name}"
    assert list(inspect.signature(function).parameters) == parameters


def test_the_permission_answers_can_read():
    """``_may_read`` reads ``.can_read`` of what the function returns: MLflow's Permission."""
    from mlflow.server.auth.permissions import NO_PERMISSIONS, READ, Permission

    assert inspect.signature(auth._get_registered_model_permission).return_annotation in ("Permission", Permission)
    assert READ.can_read is True and NO_PERMISSIONS.can_read is False

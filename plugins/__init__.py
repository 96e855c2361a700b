"""MLflow glue for the gate: the gated registry store, the server app, the run-context provider.

``build_store`` is the ``mlflow.model_registry_store`` entry point. MLflow imports every installed
store plugin when it starts, also in servers and clients that never use ``gatekeeper:``; so this
module stays tiny and the store itself is imported only when a ``gatekeeper:`` URI is built.
"""

from __future__ import annotations

from registry_hooks.contract import STORE_URI_PREFIX


def build_store(store_uri: str, tracking_uri: str | None = None):
    """``gatekeeper:<database uri>`` -> the gated store on that database."""
    from mlflow.exceptions import MlflowException

    from plugins.registry_store import GatekeeperStore

    if not store_uri.startswith(STORE_URI_PREFIX):
        raise MlflowException(f"gatekeeper store URIs look like 'gatekeeper:<database uri>', got {store_uri!r}")
    return GatekeeperStore(store_uri[len(STORE_URI_PREFIX):], tracking_uri=tracking_uri)

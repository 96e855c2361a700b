"""``gatekeeper sets register`` / ``sets list``: the evaluation sets the gate accepts evidence on.

Registration hashes the table *here*, where the data is (``registry_hooks.eval_sets.
describe_table``), and sends the server the facts: the server never reads a data file in a
worker. A local file registered with a remote server is first uploaded as an artifact of a run in
the experiment ``gatekeeper-sets``, so the verifier (on the server's side) can read the very
bytes that were hashed; a URI (``s3://``, ``runs:/``, ``mlflow-artifacts:/``) is recorded as given.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gatekeeper_cli.client import GatekeeperClient
from registry_hooks import eval_sets
from registry_hooks.tables import is_local, local_table_path

SETS_EXPERIMENT = "gatekeeper-sets"


def _upload(client: GatekeeperClient, name: str, path: Path) -> str:
    """Log ``path`` as an artifact of a new run; the artifact's URI, which the server can read."""
    from mlflow import MlflowClient

    tracking = MlflowClient(tracking_uri=client.tracking_uri)
    experiment = tracking.get_experiment_by_name(SETS_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else tracking.create_experiment(SETS_EXPERIMENT)
    run = tracking.create_run(experiment_id, run_name=f"set {name}")
    tracking.log_artifact(run.info.run_id, str(path), artifact_path=f"sets/{name}")
    tracking.set_terminated(run.info.run_id)
    return f"{run.info.artifact_uri.rstrip('/')}/sets/{name}/{path.name}"


def register(client: GatekeeperClient, name: str, data_uri: str, label: str, description: str | None) -> dict[str, Any]:
    """Hash ``data_uri``, make it readable by the server if it is a local file, and register it."""
    name = eval_sets.check_name(name)
    facts = eval_sets.describe_table(data_uri, label)
    source = data_uri
    if is_local(data_uri):
        path = Path(local_table_path(data_uri)).resolve()
        source = _upload(client, name, path) if client.remote else str(path)
    return client.register_set({
        "name": name, "source": source, "label_column": label, "content_hash": facts.content_hash,
        "n_rows": facts.n_rows, "columns": [list(c) for c in facts.columns], "keys_digest": facts.keys_digest,
        "description": description,
    })


def print_sets(found: list[dict[str, Any]], out) -> None:
    if not found:
        print("no evaluation sets registered", file=out)
        return
    for s in found:
        when = datetime.fromtimestamp(s["created_at"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        print(f"{s['name']} v{s['version']}  {s['n_rows']:,} rows  label {s['label_column']}  "
              f"{s['content_hash'][:12]}…  {when}Z by {s.get('created_by') or 'anonymous'}  {s['source']}", file=out)
        if s.get("description"):
            print(f"    {s['description']}", file=out)

"""The gate in its strict mode, for ``bench_gate``: a registered evaluation set, and a verification
recorded for each candidate before its promotion is timed.

The issue's performance budget is about a promotion "with its verification already recorded".
Re-scoring is ``bench_verify``'s subject (and needs real models; this benchmark's versions are
stand-ins), so here the verification is recorded the way an external ``gatekeeper verify-worker``
records one — it claims the pending request and signs a passed answer with the server's secret
read from the database — without re-scoring. What the gate does on the timed promotion is exactly
what it does after a real verification: the same lookup of a signed row, the same judgement.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gatekeeper_cli import sets as cli_sets
from gatekeeper_cli.client import GatekeeperClient
from registry_hooks import verification
from registry_hooks.contract import VERIFIER_ENV
from registry_hooks.secret import server_secret

SAMPLE = 256
# No verifier is started by the server: this module is its external worker.
SERVER_ENV = {VERIFIER_ENV: "external"}


def policy_file(workdir: Path, set_name: str) -> Path:
    """The built-in policy plus a required, verified set: the strict mode's only difference."""
    path = workdir / "verified-policy.yaml"
    path.write_text("version: 1\ndefaults:\n"
                    f"  evaluation: {{sets: [{set_name}], min_rows: 1000, verify: {{sample: {SAMPLE}}}}}\n")
    return path


def register_set(server_url: str, set_name: str, data, workdir: Path) -> dict:
    """Write the evaluation data and register it with the server as ``set_name`` (uploaded as an
    artifact, as ``gatekeeper sets register`` does against a remote server)."""
    path = workdir / f"{set_name}.parquet"
    data.to_parquet(path)
    return cli_sets.register(GatekeeperClient(server_url), set_name, str(path), "label", None)


class RecordingWorker:
    """Requests each candidate's verification (an ``explain``: the judgement that asks for it) and
    records it as passed, signed with the secret stored in the server's database."""

    def __init__(self, server_url: str, db_uri: str):
        self.gate = GatekeeperClient(server_url)
        self.engine: Engine = create_engine(db_uri)
        self.secret = server_secret(self.engine)

    def verify(self, name: str, version: str) -> None:
        self.gate.explain(name, version)
        now = int(time.time() * 1000)
        with Session(self.engine) as session, session.begin():
            claim = verification.claim(session, "bench-gate", now, count_try=True)
            if claim is None or (claim.key.model_name, claim.key.candidate_version) != (name, version):
                raise RuntimeError(f"no pending verification request for {name} v{version} after explain: {claim}")
            verification.finish(session, claim, verification.PASSED,
                                 {"recorded_by": "bench_gate (no re-scoring: see bench_verify)"}, None, self.secret, now)
        answer = self.gate.explain(name, version)
        if answer["verdict"] != "promote":
            raise RuntimeError(f"{name} v{version} is not promotable after its verification: {answer}")

    def close(self) -> None:
        self.engine.dispose()

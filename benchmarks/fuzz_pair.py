"""A gated and a plain MLflow server holding the same model in production, for the fuzz benchmark and tests.

The gated server's production comes through the gate with real evidence (``Scenario.first_release``);
the plain one is set directly. Both hold v1 as ``champion`` and in ``Production`` and a v2 without
evidence, so a request the gate lets through by mistake would show as a moved target.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mlflow import MlflowClient

from benchmarks.evidence import Scenario
from benchmarks.fuzz_requests import Target
from benchmarks.servers import MlflowServer
from registry_hooks.audit.log import APPROVING_ACTIONS


@dataclass
class FuzzPair:
    gated: MlflowServer
    plain: MlflowServer
    scenario: Scenario  # on the gated server
    target: Target

    def approved_decisions(self) -> list[dict]:
        """Every decision in the gated server's audit log that moved production (read over REST)."""
        return [d for d in self.scenario.gate.history(self.target.name, limit=10_000) if d["action"] in APPROVING_ACTIONS]


def _plain_production(server: MlflowServer, name: str) -> tuple[str, str]:
    client = MlflowClient(server.url, registry_uri=server.url)
    client.create_registered_model(name)
    v1, v2 = (client.create_model_version(name, f"s3://bucket/{name}/{i}").version for i in (1, 2))
    client.set_registered_model_alias(name, "champion", v1)
    client.transition_model_version_stage(name, v1, "Production")
    return v1, v2


@contextmanager
def fuzz_pair(workdir: Path, gated_uri: str, plain_uri: str, policy: Path, name: str = "fuzzed") -> Iterator[FuzzPair]:
    """Both servers started (in parallel) and prepared; stopped afterwards."""
    gated = MlflowServer(workdir / "gated", gated_uri, policy=policy)
    plain = MlflowServer(workdir / "plain", plain_uri, gated=False)
    with ExitStack() as stack:
        for server in (gated, plain):
            stack.callback(server.stop)
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(server.start, 180) for server in (gated, plain)]:
                started.result()
        scenario = Scenario(gated.url, name)
        production, candidate = scenario.first_release(), scenario.version()
        assert _plain_production(plain, name) == (production, candidate)
        yield FuzzPair(gated, plain, scenario, Target(name, production, candidate))


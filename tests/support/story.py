"""The pages' story, told once for the server tests and the browser tests alike.

A gated server with a policy file, and one model with four versions whose decisions cover what a
page must show: v1 the first release, v2 promoted on evidence, v3 refused as worse, v4 never
judged. The evidence is real (``benchmarks.evidence.Scenario``), so every check carries numbers.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.evidence import Scenario
from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import PromotionRefused


@contextmanager
def gated_server(workdir: Path, policy: str) -> Iterator[MlflowServer]:
    """A gated SQLite server (one uvicorn worker) under ``workdir`` with ``policy`` as its policy file."""
    path = workdir / "policy.yaml"
    path.write_text(policy)
    with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=path) as running:
        yield running


@dataclass(frozen=True)
class Story:
    scenario: Scenario
    v1: str
    v2: str
    v3: str
    v4: str

    @property
    def name(self) -> str:
        return self.scenario.name

    def history(self) -> list[dict]:
        """The JSON API's view of the audit log, newest first."""
        return self.scenario.gate.history(self.name)

    def decision(self, action: str, version: str) -> dict:
        return next(d for d in self.history() if d["action"] == action and d["candidate_version"] == version)


def tell(url: str, name: str) -> Story:
    """v1 first release, v2 promoted on evidence, v3 refused as worse, v4 never judged."""
    scenario = Scenario(url, name)
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    scenario.gate.promote(scenario.name, v2)
    v3 = scenario.version()
    scenario.evidence(v3, v2, candidate_model="weak", baseline_model="strong")
    with pytest.raises(PromotionRefused):
        scenario.gate.promote(scenario.name, v3)
    return Story(scenario, v1, v2, v3, scenario.version())

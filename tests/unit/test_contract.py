"""The contract between the client side and the gate: one module, documented, and honoured by both.

``registry_hooks.contract`` is where every tag, artifact path, format and table name is spelled;
these tests hold it to ``docs/evidence-format.md`` (what users are told), keep every other module
from spelling a name again, and run a writer and the gate's reader against one real tracking store.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from registry_hooks import contract

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "evidence-format.md"
PACKAGES = ("registry_hooks", "plugins", "gatekeeper_cli", "projects", "benchmarks")
NAMES = {name: value for name, value in vars(contract).items() if name.isupper() and isinstance(value, str)}
# "none" and "gatekeeper" are ordinary words too; the other names are unmistakable.
DISTINCT = {value: name for name, value in NAMES.items() if any(c in value for c in "./:_")}

EVIDENCE_RUN = (  # what docs/evidence-format.md documents an evidence and a drift run to carry
    "TAG_EVIDENCE", "TAG_CANDIDATE_NAME", "TAG_CANDIDATE_VERSION", "TAG_BASELINE_VERSION", "NO_BASELINE",
    "TAG_DATA_NAME", "TAG_DATA_HASH", "INPUT_TAG_CONTENT_HASH", "EVIDENCE_FORMAT", "EVIDENCE_MANIFEST_PATH",
    "EVIDENCE_OUTCOMES_PATH", "DRIFT_FORMAT", "DRIFT_SUMMARY_PATH", "TAG_DRIFT",
)


def documented_names(text: str) -> set[str]:
    """Every word of the page's inline code, and every quoted ``gatekeeper.`` string of its examples."""
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return {w for span in spans for w in re.split(r"[\s=,]+", span) if w} | set(re.findall(r'"(gatekeeper[./][^"]*)"', text))


def test_the_evidence_format_page_documents_the_contract_names_and_no_others():
    words = documented_names(DOC.read_text())
    assert {name for name in EVIDENCE_RUN if NAMES[name] not in words} == set()
    spelled = {w for w in words if re.match(r"gatekeeper[./]", w)}
    assert spelled - set(NAMES.values()) == set(), "documented names that registry_hooks.contract does not define"


def _spelled_again(path: Path) -> list[str]:
    """String constants (docstrings aside) that are a contract name, or hold a contract path."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    in_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docstrings:
            continue
        hits = [name for value, name in DISTINCT.items()
                if node.value == value or (id(node) in in_fstrings and "/" in value and value in node.value)]
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r} is contract.{name}" for name in hits]
    return found


def test_no_module_spells_a_contract_name_itself():
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
             if p.name != "contract.py" and "migrations" not in p.parts]  # a migration is history
    assert [hit for path in files for hit in _spelled_again(path)] == []


def test_the_gate_finds_and_reads_what_log_evidence_writes(tmp_path):
    """Writer (``log_dataset_input`` + ``log_evidence``) and reader (the gate's ``EvidenceSource``)
    on one real tracking database: the tags it searches by, the artifacts it parses and the
    dataset-input hash it checks all come out as written."""
    import mlflow
    import pandas as pd

    from plugins.evidence_source import EvidenceSource
    from projects.datasets import log_dataset_input
    from registry_hooks.evidence import EvaluatedData, ExampleOutcomes, VersionRef, log_evidence

    from tests.support.tracking import tracking_at

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    data = pd.DataFrame({"row_id": [f"r{i}" for i in range(60)], "label": np.arange(60) % 2,
                         "weather": np.where(np.arange(60) % 3, "clear", "rain")})
    with tracking_at(uri, "contract", tmp_path / "artifacts"):  # artifacts in tmp_path, not ./mlruns
        with mlflow.start_run() as run:
            logged = log_dataset_input(data, source=f"{tmp_path}/eval.parquet", name="eval", context="evaluation")
            log_evidence(candidate=("m", 2), baseline=("m", 1), data=EvaluatedData("eval", logged.content_hash),
                         task="classification",
                         outcomes=ExampleOutcomes(row_id=data["row_id"], label=data["label"],
                                                  candidate={"prediction": data["label"]},
                                                  baseline={"prediction": 1 - data["label"]},
                                                  slices={"weather": data["weather"]}))
        finding, trust, observed = EvidenceSource(uri).gather(VersionRef("m", "2"), "1", ())
    assert finding is not None and finding.error is None and finding.run_id == run.info.run_id
    assert logged.content_hash in finding.logged_data_hashes and finding.newer_data_hash == logged.content_hash
    assert trust.attempts == () and trust.same_data == ()  # one run: no other attempt to weigh
    assert [(r.run_id, r.baseline_version, r.data_hash) for r in observed] == [(run.info.run_id, "1", logged.content_hash)]
    assert finding.evidence.manifest.baseline == VersionRef("m", "1") and finding.evidence.n == 60
    assert mlflow.MlflowClient(uri).get_run(run.info.run_id).data.tags[contract.TAG_BASELINE_VERSION] == "1"


@pytest.mark.parametrize("uri, server", [
    ("http://127.0.0.1:5000", True), ("https://mlflow.example", True), ("databricks", True),
    ("sqlite:///mlflow.db", False), ("postgresql://u@h/db", False), ("file:///tmp/mlruns", False),
])
def test_one_rule_tells_a_server_from_a_database(uri, server):
    assert contract.is_server_uri(uri) is server

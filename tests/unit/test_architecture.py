"""The floors of docs/architecture.md, checked on the source: a package imports only the floors below it.

``benchmarks`` → ``projects`` → ``gatekeeper_cli`` → ``plugins`` → ``registry_hooks``. An arrow
back up (the gate's pure core importing the MLflow server, the store importing the pipeline) is
easy to add in a lazy import inside a function and invisible until the next floor is built on it;
so every ``import`` statement in every file is read with ``ast``, wherever it sits, and so is every
``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ("registry_hooks", "plugins", "gatekeeper_cli", "projects", "benchmarks")  # bottom to top
# Beyond the floors above it, what a floor may never import.
ALSO_FORBIDDEN = {"registry_hooks": ("mlflow.server",)}
NEVER = ("tests",)  # shipped code does not import the test suite


def _modules(path: Path) -> dict[str, int]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's own package up
                base = ".".join(package[: len(package) - node.level + 1] + ((base,) if base else ()))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and not str(node.args[0].value).startswith(".")):
            names = [str(node.args[0].value)]
        else:
            continue
        for name in names:
            found.setdefault(name, node.lineno)
    return found


def _imports(floor: str) -> dict[str, dict[str, int]]:
    """Per file of ``floor`` (relative path), the modules it imports."""
    files = sorted((ROOT / floor).rglob("*.py"))
    assert files, f"no Python files under {floor}/"
    return {str(f.relative_to(ROOT)): _modules(f) for f in files}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _violations(floor: str) -> list[str]:
    forbidden = FLOORS[FLOORS.index(floor) + 1:] + ALSO_FORBIDDEN.get(floor, ()) + NEVER
    return [
        f"{path}:{line} imports {module}"
        for path, modules in _imports(floor).items()
        for module, line in sorted(modules.items(), key=lambda item: item[1])
        if any(_within(module, prefix) for prefix in forbidden)
    ]


@pytest.mark.parametrize("floor", FLOORS)
def test_a_floor_imports_only_the_floors_below_it(floor):
    assert _violations(floor) == []


def test_the_reader_sees_lazy_and_relative_imports():
    """The floors test is only as good as its reader: these real imports must be found."""
    client = _imports("gatekeeper_cli")["gatekeeper_cli/client.py"]
    assert {"plugins.server_app", "plugins.build_store"} <= set(client)  # inside a method
    drift = _imports("projects")["projects/drift/tracking.py"]
    assert "projects.drift.report" in drift  # ``from .report import ...``
    assert _within("mlflow.server.handlers", "mlflow.server") and not _within("mlflow.serverless", "mlflow.server")

"""Real ``mlflow server`` processes and real PostgreSQL databases, for the tests and the benchmarks.

Servers listen on 127.0.0.1 only, run in their own process group and are stopped by that PID
(SIGTERM, then SIGKILL), so no test leaves a worker behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from registry_hooks.contract import POLICY_ENV, STORE_URI_PREFIX

PG_DSN = dict(host="127.0.0.1", port=5432, user="postgres")
REQUIRE_POSTGRES_ENV = "GATEKEEPER_REQUIRE_POSTGRES"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_problem() -> str | None:
    """None when PostgreSQL answers on 127.0.0.1:5432, else why not."""
    try:
        import psycopg2

        psycopg2.connect(dbname="test", connect_timeout=3, **PG_DSN).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: not available here
        return f"PostgreSQL not reachable on 127.0.0.1:5432 ({type(exc).__name__}: {str(exc).strip()[:120]})"
    return None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database for one test run; dropped afterwards. Yields its SQLAlchemy URI."""
    import psycopg2

    name = f"gatekeeper_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(dbname="test", **PG_DSN)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


class MlflowServer:
    """One ``mlflow server`` with the gate (or plain, for comparisons), on its own port."""

    def __init__(self, workdir: Path, backend_uri: str, *, gated: bool = True, workers: int = 1,
                 gunicorn: bool = False, policy: Path | None = None, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend_uri = backend_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"server-{self.port}.log"
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", backend_uri,
            "--artifacts-destination", str(self.workdir / "artifacts"),
            "--workers", str(workers),
        ]
        if gated:
            command += ["--registry-store-uri", f"{STORE_URI_PREFIX}{backend_uri}", "--app-name", "gatekeeper"]
        if gunicorn:
            command += ["--gunicorn-opts", f"--control-socket {self.workdir / f'gunicorn-{self.port}.ctl'} --timeout 120"]
        self.command = command
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        self.env.update(
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            DO_NOT_TRACK="true",
            MLFLOW_TRACKING_URI="",
            PYTHONUNBUFFERED="1",
        )
        self.env.pop(POLICY_ENV, None)
        if policy is not None:
            self.env[POLICY_ENV] = str(policy)
        self.env.update(env or {})
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> MlflowServer:
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not become healthy in {timeout} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

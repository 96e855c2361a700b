"""``-P serving=serve``: the week's traffic through a real ``mlflow models serve`` process.

Why the autopilot runs the scoring server itself: MLflow's scoring server loads its model once, so
``mlflow models serve -m models:/road-scenes@champion`` keeps serving the old version after the
gate moves the alias. Rolling out a promotion means restarting it — the deploy step of the loop.
The autopilot starts the server on the champion's exact version and restarts it when ``@champion``
has moved, so every logged prediction carries the run id of the version that served it, as mining
expects. The server logs through the served model's own wrapper (``projects.serving``), exactly
as in production: same inference log, same writer, same records.

The server runs in its own session on a free 127.0.0.1 port and is told to die with the
autopilot (``PR_SET_PDEATHSIG`` on Linux), so a killed autopilot leaves no scoring server behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from registry_hooks.inference_records import LOG_ENV, REQUEST_ID, root_from_env

START_TIMEOUT_S = 120
LOGGED_TIMEOUT_S = 30  # the served model's writer writes a part every 2 s at the latest
BATCH = 256  # rows a request: ~3 MB of JSON for the 3,072 pixel columns
_PR_SET_PDEATHSIG = 1
REPO = Path(__file__).resolve().parents[2]


class ServingError(RuntimeError):
    """The scoring server would not start or answer; the message carries its log's tail."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the server outlives a killed autopilot, as any child would


def _absolute(root: str) -> str:
    """A local log folder made absolute (a URI such as ``s3://…`` as it is)."""
    return root if "://" in root else str(Path(root).resolve())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScoringServer:
    """One ``mlflow models serve`` of ``models:/NAME/VERSION``, restarted on another version."""

    def __init__(self, registered_model: str, workdir: Path, say=print):
        self.registered_model, self.workdir, self.say = registered_model, Path(workdir), say
        self.version: str | None = None
        self.url: str | None = None
        self.process: subprocess.Popen | None = None

    def serve(self, version: str) -> str:
        """The URL of a server of ``version``: the running one, or a new one (the old one stopped)."""
        if self.process is not None and self.process.poll() is None and self.version == version:
            return self.url
        self.stop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        port, uri = _free_port(), f"models:/{self.registered_model}/{version}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("MLFLOW_RUN_ID", None)
        env[LOG_ENV] = _absolute(root_from_env())  # the server runs in its own folder: the same log, not ./inference-log there
        log = self.workdir / f"serve-v{version}-{port}.log"
        with log.open("w") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "-h", "127.0.0.1",
                 "-p", str(port), "-w", "1"], env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        self.version, self.url = version, f"http://127.0.0.1:{port}"
        self._wait_ready(log)
        self.say(f"serving {uri} at {self.url} (pid {self.process.pid}, logging to {env[LOG_ENV]})")
        return self.url

    def _wait_ready(self, log: Path) -> None:
        import requests

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServingError(f"mlflow models serve exited with {self.process.returncode}: {log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/ping", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise ServingError(f"mlflow models serve did not answer /ping in {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")

    def predict(self, scenes: pd.DataFrame) -> pd.Series:
        """Each scene's predicted class, as the scoring server answers ``/invocations`` (the
        server logs every row under the request id the scene carries)."""
        import requests

        predicted = []
        for start in range(0, len(scenes), BATCH):
            chunk = scenes.iloc[start:start + BATCH]
            body = json.dumps({"dataframe_split": {"columns": list(chunk.columns), "data": chunk.to_numpy().tolist()}})
            response = requests.post(f"{self.url}/invocations", data=body, headers={"Content-Type": "application/json"},
                                     timeout=120)
            if response.status_code != 200:
                raise ServingError(f"{self.url}/invocations answered {response.status_code}: {response.text[:500]}")
            answers = response.json()["predictions"]
            if [a[REQUEST_ID] for a in answers] != chunk[REQUEST_ID].tolist():
                raise ServingError("the scoring server answered other request ids than it was sent")
            predicted += [a["prediction"] for a in answers]
        return pd.Series(predicted, dtype=object)

    def score(self, scenes: pd.DataFrame) -> pd.Series:
        """:meth:`predict`, then wait until the inference log holds every scene's record (the
        server's writer hands them over within seconds), so the week's window is whole when read."""
        import datetime as dt

        from registry_hooks.inference_records import read_window

        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        predicted = self.predict(scenes)
        wanted, deadline = set(scenes[REQUEST_ID]), time.monotonic() + LOGGED_TIMEOUT_S
        while True:
            logged = read_window(start, dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1), columns=[REQUEST_ID])
            missing = len(wanted - set(logged.column(REQUEST_ID).to_pylist())) if logged.num_rows else len(wanted)
            if not missing:
                return predicted
            if time.monotonic() > deadline:
                raise ServingError(f"{missing} of {len(wanted)} predictions are not in the inference log "
                                   f"{LOGGED_TIMEOUT_S} s after the scoring server answered")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM (the writer flushes the log on it), then SIGKILL; the whole session."""
        if self.process is None:
            return
        process, self.process = self.process, None
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

"""A webhook receiver on 127.0.0.1 for the tests: records every POST, answers what it is told.

It verifies nothing itself: ``Received.signed`` checks a POST's signature with MLflow's own
``_generate_hmac_signature``, so a receiver written for MLflow's webhooks verifies the gate's.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mlflow.webhooks.delivery import _generate_hmac_signature

from benchmarks.servers import free_port

SECRET = "receiver-shared-secret-0123456789"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["X-MLflow-Delivery-Id"]

    def signed(self, secret: str = SECRET) -> bool:
        expected = _generate_hmac_signature(secret, self.delivery_id, self.headers["X-MLflow-Timestamp"], self.body)
        return self.headers["X-MLflow-Signature"] == expected


class Receiver:
    """A webhook receiver on a fixed port that can be stopped (the port then refuses connections)
    and started again; ``answers`` are the statuses of the next POSTs, then 200."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/gate"
        self.received: list[Received] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with receiver.lock:
                    receiver.received.append(Received(dict(self.headers), body))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def about(self, model: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.json["data"]["model_name"] == model]

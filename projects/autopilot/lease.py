"""The autopilot's side of its lease: wait for it, keep it alive, notice when it is gone.

The server decides who holds a model's lease (``registry_hooks.autopilot_lease``, one clock, one
compare-and-set); this keeps asking. ``acquire`` waits while another instance holds it — a second
autopilot waits, it does not double-run — a heartbeat thread renews it every third of its time
to live, and ``ensure`` (called before every step) raises ``LeaseLost`` once a renewal failed: a
holder that was paused past its lease stops before its next step instead of racing its successor.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

_logger = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another autopilot holds the model now (or the server could not be asked in time)."""


def holder_id() -> str:
    """Who asks: host, process and a random part (a restarted process is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    def __init__(self, gate, model: str, ttl_s: int, *, holder: str | None = None, say: Callable[[str], None] = print):
        self.gate, self.model, self.ttl_s = gate, model, ttl_s
        self.holder = holder or holder_id()
        self.generation: int | None = None
        self._say = say
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, poll_s: float = 2.0, timeout_s: float | None = None) -> None:
        """Wait until this holder has the lease, then keep it alive in the background."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        told = None
        while True:
            state = self.gate.lease(self.model, self.holder, "acquire", ttl_s=self.ttl_s)
            if state["held"]:
                break
            if state["holder"] != told:
                self._say(f"{self.model} is driven by {state['holder']}; waiting for its lease "
                          f"(ends {time.strftime('%H:%M:%S', time.gmtime(state['expires_at'] / 1000))}Z unless renewed)")
                told = state["holder"]
            if deadline is not None and time.monotonic() >= deadline:
                raise LeaseLost(f"{self.model}: the lease stayed with {state['holder']} for {timeout_s} s")
            time.sleep(poll_s)
        self.generation = state["generation"]
        self._say(f"{self.holder} drives {self.model} (lease generation {self.generation})")
        self._thread = threading.Thread(target=self._beat, name="autopilot-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                state = self.gate.lease(self.model, self.holder, "renew", ttl_s=self.ttl_s, generation=self.generation)
            except Exception as exc:  # noqa: BLE001 - a server down for a moment: try again next beat
                _logger.warning("autopilot lease renewal failed: %s", exc)
                continue
            if not state["held"]:
                self._lost = f"the lease of {self.model} went to {state['holder']} (generation {state['generation']})"
                return

    def ensure(self) -> None:
        """Raise ``LeaseLost`` if the lease is gone; renew it now otherwise (a step may be long)."""
        if self._lost is None:
            state = self.gate.lease(self.model, self.holder, "renew", ttl_s=self.ttl_s, generation=self.generation)
            if not state["held"]:
                self._lost = f"the lease of {self.model} went to {state['holder']} (generation {state['generation']})"
        if self._lost is not None:
            raise LeaseLost(self._lost)

    def release(self) -> None:
        """Stop renewing and hand the lease back, so the next instance starts at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.generation is not None and self._lost is None:
            self.gate.lease(self.model, self.holder, "release", generation=self.generation)

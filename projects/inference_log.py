"""The inference log: every prediction the served model makes, as partitioned Parquet.

Why here and like this (docs/design/operation-vacation.md, section 2): mining, feedback and the
autopilot all read what production saw, so the scorer writes it down itself, off the request
path, in a layout a reader can prune by time. No MLflow import: the log is plain files.

Configuration (read once per process, strictly: a bad value is an error that names the variable):

- ``GATEKEEPER_INFERENCE_LOG``: where the log lives: a local folder (default ``./inference-log``)
  or any fsspec URI (``file://``, ``memory://``, ``s3://`` when s3fs is installed, ...); ``off``
  writes nothing (a process that scores evaluation data, not traffic).
- ``GATEKEEPER_LOG_INPUTS``: ``reference`` (default: ``input_sha256`` of the pixel row only) or
  ``full`` (the pixels too, as a 3,072-byte ``pixels`` column).

Layout: ``<root>/date=YYYY-MM-DD/hour=HH/part-<pid>-<seq>-<uuid>.parquet`` (Hive-style, UTC), one
``schema_version`` column for later changes. The layout, the request-id format and the readers
(``read_window``, ``find``) live in ``registry_hooks.inference_records``: the gate's server reads
the log too (feedback), and never imports this package. Files are written under a dot-name and renamed, and
readers skip dot- and underscore-names, so nobody ever reads half a part. Counters (rows written,
parts, rows dropped) go to ``<root>/_metrics/writer-<host>-<pid>.json`` after every write.

Writer: one daemon thread per process and a bounded queue (``QUEUE_ROWS``). A part is written
once ``ROWS_PER_PART`` rows wait or the oldest waiting row is ``FLUSH_SECONDS`` old; ``close``
(registered with ``atexit``, and run by a SIGTERM handler that then hands the signal on) writes
the rest. A kill -9 loses what waited: at most the last ``FLUSH_SECONDS`` plus one write. A full
queue makes ``submit`` wait at most ``PUT_TIMEOUT`` seconds, then the batch is dropped and
counted (a warning, the metrics file, ``stats()``): the log must never take the scorer down.
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from registry_hooks.inference_records import DEFAULT_ROOT, LOG_ENV, OFF, LogRootError, filesystem, partition, root_from_env

INPUTS_ENV = "GATEKEEPER_LOG_INPUTS"
INPUT_MODES = ("reference", "full")

SCHEMA_VERSION = 1
ROWS_PER_PART = 1024
FLUSH_SECONDS = 2.0
PUT_TIMEOUT = 0.05
QUEUE_ROWS = 16 * ROWS_PER_PART
CLOSE_TIMEOUT = 10.0
METRICS_DIR = "_metrics"

_logger = logging.getLogger(__name__)


class InferenceLogError(ValueError):
    """A configuration the log cannot work with; the message names the variable."""


@dataclass(frozen=True)
class LogConfig:
    """Where the log goes (``root`` None: nowhere) and whether it keeps the pixels."""

    root: str | None = DEFAULT_ROOT
    inputs: str = "reference"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LogConfig:
        try:
            root = root_from_env(environ)
        except LogRootError as exc:
            raise InferenceLogError(str(exc)) from None
        inputs = environ.get(INPUTS_ENV, "reference")
        if inputs not in INPUT_MODES:
            raise InferenceLogError(f"{INPUTS_ENV}={inputs!r} is not one of {', '.join(INPUT_MODES)}")
        return cls(root, inputs)


@dataclass(frozen=True)
class Batch:
    """One predict call's rows: equal-length 1-D ``columns`` (request ids, prediction, ...),
    ``constants`` repeated on every row (the model's ids), the ``(n, d)`` uint8 ``pixels``."""

    time: dt.datetime
    columns: Mapping[str, Any]
    pixels: np.ndarray
    constants: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("a Batch's time must be timezone-aware (the log is in UTC)")
        object.__setattr__(self, "time", self.time.astimezone(dt.timezone.utc))

    def __len__(self) -> int:
        return len(self.pixels)


def to_table(batch: Batch, inputs: str) -> pa.Table:
    """The rows of ``batch`` as the log stores them (schema version 1)."""
    n = len(batch)
    pixels = np.ascontiguousarray(batch.pixels, dtype=np.uint8)
    digests = [hashlib.sha256(row).hexdigest() for row in pixels]
    columns: dict[str, pa.Array] = {
        "schema_version": pa.array(np.full(n, SCHEMA_VERSION, np.int16)),
        "time": pa.array(np.full(n, np.datetime64(batch.time.replace(tzinfo=None), "us")), pa.timestamp("us", tz="UTC")),
        **{name: pa.array([value] * n, pa.string()) for name, value in batch.constants.items()},
        **{name: pa.array(values) for name, values in batch.columns.items()},
        "input_sha256": pa.array(digests, pa.string()),
    }
    if inputs == "full":
        width = pixels.shape[1]
        columns["pixels"] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(pixels)])
    return pa.table(columns)


class Writer:
    """The background writer of one process (see the module docstring)."""

    def __init__(self, config: LogConfig):
        if config.root is None:
            raise InferenceLogError(f"{LOG_ENV}={OFF}: there is no log to write")
        self.config = config
        self.fs, self.root = filesystem(config.root)
        self._cond = threading.Condition(threading.RLock())  # RLock: a signal handler may interrupt submit
        self._pending: list[Batch] = []
        self._pending_rows = 0
        self._oldest = 0.0  # monotonic time the oldest pending batch arrived
        self._closing = False
        self._seq = 0
        self._counts = {"rows_written": 0, "parts_written": 0, "rows_dropped": 0, "batches_dropped": 0, "write_errors": 0,
                        "write_cpu_seconds": 0.0}  # the writer thread's CPU: what the log costs the scorer's cores
        self._submitted = 0  # rows accepted so far; ``_done`` rows of those are written (or failed)
        self._done = 0
        self._thread = threading.Thread(target=self._run, name="gatekeeper-inference-log", daemon=True)
        self._thread.start()

    # -- the request side ----------------------------------------------------------------------

    def submit(self, batch: Batch) -> bool:
        """Queue ``batch``; False (and counted) when the queue stayed full for ``PUT_TIMEOUT``."""
        deadline = time.monotonic() + PUT_TIMEOUT
        with self._cond:
            while not self._room_for(len(batch)):
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    return self._drop(batch)
                self._cond.wait(left)
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(batch)
            self._pending_rows += len(batch)
            self._submitted += len(batch)
            if self._pending_rows >= ROWS_PER_PART:
                self._cond.notify_all()
        return True

    def _room_for(self, rows: int) -> bool:
        """A batch larger than the whole queue still goes in when the queue is empty."""
        return not self._closing and (self._pending_rows == 0 or self._pending_rows + rows <= QUEUE_ROWS)

    def _drop(self, batch: Batch) -> bool:
        first = self._counts["batches_dropped"] == 0
        self._counts["rows_dropped"] += len(batch)
        self._counts["batches_dropped"] += 1
        log = _logger.warning if first or self._counts["batches_dropped"] % 100 == 0 else _logger.debug
        log("inference log queue full: dropped %d row(s), %d in all (see %s/%s)",
            len(batch), self._counts["rows_dropped"], self.config.root, METRICS_DIR)
        return False

    def stats(self) -> dict[str, float]:
        with self._cond:
            return {**self._counts, "rows_queued": self._pending_rows}

    def flush(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Write everything submitted so far; True when done within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._oldest = -FLUSH_SECONDS  # due now
            self._cond.notify_all()
            while self._done < target and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._done >= target

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what waits and stop the thread; later batches are dropped (and counted)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            _logger.error("inference log: the writer did not finish within %.0f s; %d row(s) may be lost",
                          timeout, self.stats()["rows_queued"])

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    self._cond.wait(self._wait_time())
                batches, self._pending, self._pending_rows = self._pending, [], 0
                stop = self._closing
                self._cond.notify_all()  # room in the queue again
            if batches:
                self._write(batches)
            if stop:
                return

    def _due(self) -> bool:
        if self._closing:
            return True
        return bool(self._pending) and (self._pending_rows >= ROWS_PER_PART or time.monotonic() - self._oldest >= FLUSH_SECONDS)

    def _wait_time(self) -> float:
        return FLUSH_SECONDS if not self._pending else max(0.0, self._oldest + FLUSH_SECONDS - time.monotonic())

    def _write(self, batches: list[Batch]) -> None:
        """One part per hour the batches fall in; an error is logged and counted, never raised."""
        cpu = time.thread_time()
        by_hour: dict[str, list[Batch]] = {}
        for batch in batches:
            by_hour.setdefault(partition(batch.time), []).append(batch)
        for folder, group in by_hour.items():
            rows = sum(len(b) for b in group)
            try:
                table = pa.concat_tables([to_table(b, self.config.inputs) for b in group], promote_options="permissive")
                self._write_part(folder, table)
                written = {"rows_written": rows, "parts_written": 1}
            except Exception:  # a full disk, a lost bucket: the scorer goes on
                _logger.exception("inference log: writing %d row(s) to %s failed", rows, folder)
                written = {"write_errors": 1, "rows_dropped": rows}
            with self._cond:
                for key, value in written.items():
                    self._counts[key] += value
                self._done += rows
                self._cond.notify_all()
        self._write_metrics()
        with self._cond:
            self._counts["write_cpu_seconds"] += time.thread_time() - cpu

    def _write_part(self, folder: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        self._seq += 1
        name = f"part-{os.getpid()}-{self._seq:06d}-{uuid.uuid4().hex}.parquet"
        directory = f"{self.root}/{folder}"
        self.fs.makedirs(directory, exist_ok=True)
        temporary, final = f"{directory}/.{name}.tmp", f"{directory}/{name}"
        with self.fs.open(temporary, "wb") as out:
            pq.write_table(table, out)
        self.fs.mv(temporary, final)

    def _write_metrics(self) -> None:
        directory = f"{self.root}/{METRICS_DIR}"
        try:
            self.fs.makedirs(directory, exist_ok=True)
            path = f"{directory}/writer-{socket.gethostname()}-{os.getpid()}.json"
            with self.fs.open(path, "w") as out:
                json.dump({**self.stats(), "pid": os.getpid(), "updated": dt.datetime.now(dt.timezone.utc).isoformat()}, out)
        except Exception:
            _logger.exception("inference log: cannot write the metrics file")


# -- one writer per process ----------------------------------------------------------------------

_lock = threading.RLock()  # RLock: the SIGTERM handler may interrupt writer_for
_writers: dict[LogConfig, Writer] = {}
_owner_pid = os.getpid()
_hooked = False  # atexit and SIGTERM set once per process (a forked child inherits both)
_previous_sigterm: Any = None


def writer_for(config: LogConfig) -> Writer | None:
    """The process's writer for ``config`` (None when the log is off), made on the first call
    (a model's ``load_context``), closed at exit and on SIGTERM. After a fork the child starts its own (threads do not fork)."""
    global _owner_pid, _hooked
    if config.root is None:
        return None
    with _lock:
        if _owner_pid != os.getpid():
            _writers.clear()
            _owner_pid = os.getpid()
        if not _hooked:
            atexit.register(close_all)
            _chain_sigterm()
            _hooked = True
        if config not in _writers:
            _writers[config] = Writer(config)
        return _writers[config]


def close_all() -> None:
    """Write what waits in every writer of this process (atexit, SIGTERM, tests)."""
    with _lock:
        writers = list(_writers.values()) if _owner_pid == os.getpid() else []
        _writers.clear()
    for writer in writers:
        writer.close()


def _chain_sigterm() -> None:
    """Close the writers on SIGTERM, then do what the process did before (its handler, or die of
    the signal). Only the main thread may set handlers; elsewhere atexit must do."""
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return
    _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame) -> None:
    close_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

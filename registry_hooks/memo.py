"""Judging parsed evidence once: results of pure functions of evidence content, kept per process.

Why: a candidate is judged several times over the same evidence — when a verification is
requested, by ``explain``, again by the promotion itself — and on 100k examples the statistics
and the row-id check are most of a promotion's cost. Their results depend on nothing but the
evidence *content* and their other arguments, so they are kept here, keyed by that content, and
reused while it is unchanged: a new run, a re-logged outcomes file, a new baseline or policy is
a new key, never a stale answer. ``decide`` stays a pure function — it gives the same verdict
with or without this memo.

Content identity is only claimed for evidence read from bytes (``registry_hooks.evidence.
parse_outcomes`` checks the outcomes file against the manifest's sha256, so run id + manifest
pin every array); evidence built in memory (a preview, a simulation) has no identity and is
always computed afresh. Only small results are kept (checks, booleans, file digests), never the
arrays: a worker holds no evidence between requests, and a judgement whose results are all kept
never parses the outcomes at all (``Evidence`` loads them on first use).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Memo:
    """A bounded, thread-safe least-recently-used map; ``size`` entries at most."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a memo keeps at least one entry, not {size}")
        self._size, self._lock, self._entries = size, threading.Lock(), OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Hashable | None, compute: Callable[[], T]) -> T:
        """The kept result for ``key``, else ``compute()`` kept; ``key`` None: computed, not kept.
        Two threads missing the same key both compute (the same answer); nothing waits on a lock
        while computing."""
        if key is None:
            return compute()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        value = compute()
        self.put(key, value)
        return value

    def peek(self, key: Hashable) -> Any:
        """The kept value for ``key``, or None; counts as a use."""
        with self._lock:
            if key not in self._entries:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


def content_key(evidence: Any, *rest: Hashable) -> tuple | None:
    """The key of a result computed from ``evidence`` (and ``rest``): None when the evidence has no
    content identity (built in memory, see the module docstring), so nothing is kept for it."""
    identity = getattr(evidence, "content_identity", None)
    return None if identity is None else (identity, *rest)

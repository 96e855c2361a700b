"""Running one database transaction again when it lost a race — and only then.

The database's own exception types tell a race from a failure, the way Optuna's RDB storage
(``optuna/storages/_rdb/storage.py``) does:

- ``OperationalError``: the database could not take a lock or finish the transaction now —
  SQLite's "database is locked", PostgreSQL's serialization failure or deadlock, a table another
  worker is creating at this moment. Wait a short, jittered, growing pause and run the whole
  transaction again (the jitter keeps racing workers from waking up together).
- ``IntegrityError``: another writer inserted the same key first. Run the transaction again at
  once: it reads before it writes, so this time it finds the winner's row instead of inserting.
- Anything else is a failure and propagates at once, and so does the last race once the attempts
  are spent: a retry loop must never turn a broken database into a slow one.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError

T = TypeVar("T")

ATTEMPTS = 10
FIRST_PAUSE_S = 0.05  # doubled after each lock conflict, up to MAX_PAUSE_S: at most ~5.5 s in all
MAX_PAUSE_S = 1.0


def pause(conflicts: int) -> float:
    """Seconds to wait after the ``conflicts``-th lock conflict in a row (1, 2, …): half to all of
    ``FIRST_PAUSE_S · 2^(conflicts-1)``, capped at ``MAX_PAUSE_S``."""
    return random.uniform(0.5, 1.0) * min(MAX_PAUSE_S, FIRST_PAUSE_S * 2 ** (conflicts - 1))


def retrying(transaction: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """``transaction()`` — one whole transaction that reads what it writes against — until it
    commits, at most ``attempts`` times."""
    conflicts = 0
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except IntegrityError:  # lost an insert race: the re-run reads the winner's row
            if attempt == attempts:
                raise
        except OperationalError:  # a lock the database could not take now
            if attempt == attempts:
                raise
            conflicts += 1
            time.sleep(pause(conflicts))
    raise AssertionError("unreachable: the last attempt returns or raises")

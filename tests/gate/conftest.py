"""The gated and plain server pair the malformed-input tests send every request to."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Iterator

import pytest

from benchmarks.fuzz_pair import FuzzPair, fuzz_pair


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def pair(request, tmp_path_factory, gate_policy) -> Iterator[FuzzPair]:
    """A gated and a plain server on SQLite, then on PostgreSQL (one database each), per test module."""
    workdir = tmp_path_factory.mktemp(f"pair-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            uris = [f"sqlite:///{workdir}/{side}.db" for side in ("gated", "plain")]
        else:
            factory = request.getfixturevalue("postgres_uri_factory")
            uris = [stack.enter_context(factory()) for _ in range(2)]
        yield stack.enter_context(fuzz_pair(workdir, *uris, gate_policy))

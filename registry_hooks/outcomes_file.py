"""Reading an ``outcomes.arrow`` within a bounded memory, and the budget that bounds it.

A gate worker judges evidence of millions of rows in its own memory, so what it holds per row is
the ceiling on how big an evaluation the gate can judge. The reader therefore:

- reads the file's record batches one at a time, straight into arrays sized once from the
  manifest's row count (no list of pieces joined at the end, which briefly held every column twice
  and left the freed pieces in the worker's heap);
- decodes only the columns the judgement uses (``Wanted``: the policy's metrics say which optional
  probabilities, its slice spec which slices); the others it still validates batch by batch, so a
  malformed file is refused whatever the policy, or skips (``*.loss`` and unknown columns, which
  the gate never reads);
- keeps a slice as small integer codes and a table of its names, not a string per row, and
  integer labels and predictions in the narrowest integer type that holds them;
- checks that row ids are distinct from a 64-bit hash per row, sorted, with an exact recheck of the
  few ids whose hashes collide, instead of a hash set of every id.

The budget (``max_rows``) is a row count because it is known from the manifest before a byte of
the outcomes is read: evidence over it is refused (``TooManyRows``) without being opened.
No MLflow here; the server reads the budget's setting, ``registry_hooks.contract.EVIDENCE_MAX_ROWS_ENV``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from registry_hooks.contract import EVIDENCE_MAX_ROWS_ENV, EVIDENCE_OUTCOMES_PATH
from registry_hooks.outcomes import SliceCodes

#: Peak worker memory per row of a first judgement, as the budget assumes it: 73 measured at 10M
#: rows (``benchmarks/bench_big_evidence.py``: two models with 0/1 predictions and probabilities, a
#: slice, 8-character row ids, a log-loss policy); the rest is for class ids past one byte, longer
#: ids, a score column, more slices. String class labels cost more (a Python string a value).
BYTES_PER_ROW = 120
#: Rows of one evidence file a worker judges unless ``EVIDENCE_MAX_ROWS_ENV`` says otherwise: about
#: 2.4 GB at ``BYTES_PER_ROW`` over the ~250 MB of an open gate, within a 4 GB worker with room to spare.
DEFAULT_MAX_ROWS = 20_000_000

_PROBABILITIES = ("proba_label", "score")


class EvidenceError(ValueError):
    """Evidence that is missing, garbled or inconsistent; the message says what is wrong."""


class TooManyRows(EvidenceError):
    """Evidence with more rows than a worker judges: refused before its outcomes are read.
    ``numbers``: the rows, the budget and what it means in memory, for the refusal's check."""

    def __init__(self, message: str, numbers: Mapping[str, Any]):
        super().__init__(message)
        self.numbers = dict(numbers)


def max_rows(environ: Mapping[str, str] = os.environ) -> int:
    """The budget: ``GATEKEEPER_EVIDENCE_MAX_ROWS`` rows, else ``DEFAULT_MAX_ROWS``. A value that is
    not a positive whole number is an error, not a silent default: a mistyped budget would
    otherwise let a worker take on evidence it cannot hold."""
    text = environ.get(EVIDENCE_MAX_ROWS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_ROWS
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{EVIDENCE_MAX_ROWS_ENV} must be a positive number of rows, got {text!r}")
    return int(text)


def within_budget(n_rows: int, budget: int, others: int = 0) -> None:
    """Refuse evidence of ``n_rows`` when, with the ``others`` rows a judgement already reads, they
    are more than ``budget`` (``TooManyRows``), saying what to do instead."""
    if others + n_rows <= budget:
        return
    megabytes = budget * BYTES_PER_ROW / 2**20
    beside = f", with the {others:,} of other evidence this judgement reads," if others else ""
    raise TooManyRows(
        f"its {n_rows:,} rows{beside} are more than the {budget:,} a gate worker judges ({EVIDENCE_MAX_ROWS_ENV}; at about "
        f"{BYTES_PER_ROW} bytes a row, {megabytes:,.0f} MB of the worker's memory): evaluate every row with "
        f"`-P engine=spark` for the team's own report, and give the gate a random sample of at most {budget:,} rows "
        "registered as an evaluation set (`gatekeeper sets register`) with evidence on it",
        {"rows": n_rows, "other_rows": others, "max_rows": budget, "bytes_per_row": BYTES_PER_ROW,
         "budget_mb": round(megabytes)},
    )


def within_file_budget(size: int, budget: int) -> None:
    """Refuse an outcomes file larger than the whole budget's memory before reading it: its bytes
    are held while it is parsed (the gate judges the bytes it hashed), whatever row count its
    manifest claims, so a manifest that understates the rows cannot make a worker read more."""
    limit = budget * BYTES_PER_ROW
    if size <= limit:
        return
    raise TooManyRows(
        f"its {EVIDENCE_OUTCOMES_PATH} is {size / 2**20:,.1f} MB, more than the {limit / 2**20:,.1f} MB of a gate "
        f"worker's evidence budget ({EVIDENCE_MAX_ROWS_ENV}={budget:,} rows at about {BYTES_PER_ROW} bytes a row): "
        "evaluate every row with `-P engine=spark` for the team's own report, and give the gate a random sample "
        "registered as an evaluation set (`gatekeeper sets register`) with evidence on it",
        {"file_bytes": size, "max_rows": budget, "bytes_per_row": BYTES_PER_ROW, "budget_mb": round(limit / 2**20, 1)},
    )


@dataclass(frozen=True)
class Wanted:
    """Which optional columns a judgement decodes and keeps; None: all of them. Optional
    probabilities not kept are still validated; slices not kept are not read."""

    fields: frozenset[str] | None = None  # of "proba_label", "score"
    slices: frozenset[str] | None = None  # slice column names, without the "slice." prefix


ALL = Wanted()


@dataclass(frozen=True)
class Layout:
    """What the reader does with the outcomes file's columns: ``models`` are the prefixes judged
    (candidate, and baseline when compared), ``slices`` the manifest's slice columns."""

    models: tuple[str, ...]
    slices: tuple[str, ...]
    wanted: Wanted

    def role(self, name: str) -> str | None:
        """``ids``, ``keep`` (null-checked), ``probability`` (range-checked and kept), ``check``
        (range-checked only), ``slice``, ``named`` (a slice of the manifest the judgement does not
        use: present, not read), or None: not read. Every prediction column is kept, even a
        baseline's in first-release evidence: the parse has always refused NaN classes there."""
        if name == "row_id":
            return "ids"
        if name == "label":
            return "keep"
        prefix, _, field = name.partition(".")
        if prefix == "slice":
            if field not in self.slices:
                return None
            return "slice" if self.wanted.slices is None or field in self.wanted.slices else "named"
        if field == "prediction":
            return "keep"
        if field in _PROBABILITIES and prefix in self.models:
            return "probability" if self.wanted.fields is None or field in self.wanted.fields else "check"
        return None


def read_columns(raw: bytes, n_rows: int, layout: Layout, check_ids: bool = True) -> tuple[dict[str, Any], int]:
    """The columns ``layout`` keeps, by name, and the file's row count (which may differ from
    ``n_rows``, the manifest's: the caller refuses that). Row ids come back as an Arrow column and
    whether they are distinct (not checked, and True, unless ``check_ids``); a slice as
    ``SliceCodes``; the rest as numpy arrays (None for a column only validated, or not read)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        schema = ipc.open_file(pa.BufferReader(raw)).schema
        roles = {name: role for name in schema.names if (role := layout.role(name))}
        read = [name for name, role in roles.items() if role != "named"]
        options = ipc.IpcReadOptions(included_fields=[schema.get_field_index(name) for name in read])
        reader = ipc.open_file(pa.BufferReader(raw), options=options)
        sinks = {name: _sink(roles[name], schema.field(name).type, n_rows, check_ids) for name in read}
        count = 0
        for index in range(reader.num_record_batches):
            batch = reader.get_batch(index)
            start, count = count, count + batch.num_rows
            for name, sink in sinks.items():
                column = batch.column(name)
                if column.null_count and not sink.nulls_read_as_nan:
                    raise EvidenceError(f"outcomes column '{name}' has missing values")
                sink.take(name, column, start, count)
            del batch
    except EvidenceError:
        raise
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise EvidenceError(f"{EVIDENCE_OUTCOMES_PATH} is not a readable Arrow IPC (Feather v2) file: {exc}") from exc
    return {name: sinks[name].result(count) if name in sinks else None for name in roles}, count


class _Sink:
    """One column's destination: an array of the manifest's row count, filled batch by batch; rows
    past it (a file longer than its manifest says) are counted by the caller, not kept."""

    nulls_read_as_nan = False  # else a missing value is refused as such

    def __init__(self, dtype, n_rows: int):
        self.array = np.empty(n_rows, dtype=dtype) if dtype is not None else None

    def store(self, values: np.ndarray, start: int, stop: int) -> None:
        if self.array is not None and stop <= len(self.array):
            self.array[start:stop] = values

    def take(self, name: str, column, start: int, stop: int) -> None:
        self.store(column.to_numpy(zero_copy_only=False), start, stop)  # zero-copy where it can: numbers

    def result(self, count: int):
        return self.array if self.array is None or count == len(self.array) else self.array[:count]


class _Integers(_Sink):
    """Integer labels and predictions (class ids, mostly 0 and 1) in the narrowest signed type that
    holds every value read so far, widened (a copy, at most three times) when a batch needs more:
    a byte a row for binary classes, where int64 took eight. Values equal, so every metric is."""

    _LADDER = (np.int8, np.int16, np.int32, np.int64)

    def __init__(self, widest, n_rows: int):
        super().__init__(np.int8, n_rows)
        self.widest, self.low, self.high = np.dtype(widest), 0, 0

    def take(self, name: str, column, start: int, stop: int) -> None:
        values = column.to_numpy(zero_copy_only=False)
        if len(values):
            self.low, self.high = min(self.low, int(values.min())), max(self.high, int(values.max()))
            fits = [d for d in self._LADDER if np.iinfo(d).min <= self.low and self.high <= np.iinfo(d).max]
            dtype = np.dtype(fits[0]) if fits else self.widest  # past int64: the file's own uint64
            if dtype != self.array.dtype:
                self.array = self.array.astype(dtype)
        self.store(values, start, stop)


class _Probabilities(_Sink):
    nulls_read_as_nan = True  # and refused as out of [0, 1], as they always were

    def take(self, name: str, column, start: int, stop: int) -> None:
        values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
            raise EvidenceError(f"'{name}' must hold probabilities in [0, 1]")
        self.store(values, start, stop)


class _Slice(_Sink):
    """A slice as codes into a table of names: each batch's dictionary (its distinct values, a few
    strings) mapped onto one table, sorted at the end as ``np.unique`` would order the values."""

    def __init__(self, n_rows: int):
        super().__init__(np.int32, n_rows)
        self.names: dict[str, int] = {}

    def take(self, name: str, column, start: int, stop: int) -> None:
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column)
        mapping = np.array([self.names.setdefault(str(v), len(self.names)) for v in encoded.dictionary.to_pylist()],
                           dtype=np.int32)
        self.store(mapping[encoded.indices.to_numpy(zero_copy_only=False)], start, stop)

    def result(self, count: int) -> SliceCodes:
        names = sorted(self.names)
        dtype = np.uint8 if len(names) <= 2**8 else np.uint16 if len(names) <= 2**16 else np.int32
        renumber = np.empty(len(names), dtype=dtype)
        renumber[[self.names[n] for n in names]] = np.arange(len(names), dtype=dtype)
        return SliceCodes(codes=renumber[super().result(count)], names=tuple(names))


class _RowIds(_Sink):
    """Row ids stay an Arrow column (turning millions of strings into Python objects is most of a
    parse; only agreement checks and the verifier need them); a 64-bit hash of each is kept to
    check that they are distinct."""

    def __init__(self, n_rows: int, check: bool):
        super().__init__(np.uint64 if check else None, n_rows)
        self.chunks: list = []
        self.hasher = _IdHasher()

    def take(self, name: str, column, start: int, stop: int) -> None:
        self.chunks.append(column)
        if self.array is not None:
            self.store(self.hasher(column), start, stop)

    def result(self, count: int) -> tuple[Any, bool]:
        """The ids and whether they are distinct (True when not checked, or when the file has more
        rows than its manifest: the caller refuses that)."""
        import pyarrow as pa

        column = pa.chunked_array(self.chunks) if self.chunks else pa.chunked_array([], pa.string())
        if self.array is None or count > len(self.array):
            return column, True
        return column, _distinct(column, super().result(count), self.hasher)


class _IdHasher:
    """A 64-bit hash of each id's bytes, vectorised over one batch's string buffer: the sum of each
    byte times a random odd weight for its position, plus the length. The weights are drawn per
    parse, so a writer cannot choose ids that collide (two different ids collide with chance at
    most 2^-56), and a collision only costs an exact comparison (``_distinct``). ~0.1 s per million
    ids, against 0.2 s for SipHash over Python strings."""

    _CHUNK_BYTES = 2**18  # ids hashed at a time: about 32 bytes of temporaries per byte of ids

    def __init__(self):
        self.weights = np.empty(0, dtype=np.uint64)
        self.rng = np.random.default_rng()

    def __call__(self, column) -> np.ndarray:
        import pyarrow as pa

        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            column = column.cast(pa.string())  # numbers and the like: hashed as their text
        wide = pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int64 if wide else np.int32)
        return self._hash(offsets[column.offset:column.offset + len(column) + 1].astype(np.int64),
                          np.frombuffer(column.buffers()[2] or b"", dtype=np.uint8))

    def _hash(self, offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
        if offsets[-1] - offsets[0] > self._CHUNK_BYTES and len(offsets) > 2:
            half = len(offsets) // 2
            return np.concatenate([self._hash(offsets[:half + 1], data), self._hash(offsets[half:], data)])
        lengths = np.diff(offsets)
        longest = int(lengths.max(initial=0))
        if longest > len(self.weights):  # drawn once per position, kept for the whole parse
            more = self.rng.integers(0, 2**63, size=longest - len(self.weights), dtype=np.uint64)
            self.weights = np.concatenate([self.weights, more * np.uint64(2) + np.uint64(1)])
        low, high = int(offsets[0]), int(offsets[-1])
        position = np.arange(high - low, dtype=np.int64) - np.repeat(offsets[:-1] - low, lengths)
        mixed = self.weights[position]
        mixed *= data[low:high].astype(np.uint64) + np.uint64(1)
        sums = np.zeros(high - low + 1, dtype=np.uint64)
        np.cumsum(mixed, out=sums[1:])
        by_length = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # ids of different lengths: hashed apart
        return (sums[offsets[1:] - low] - sums[offsets[:-1] - low]) ^ by_length


def _distinct(column, hashes: np.ndarray, hasher: _IdHasher) -> bool:
    """Whether the ids are distinct: sorted hashes with no neighbour equal say so; ids whose hashes
    are equal are compared exactly, stopping at the first repeat (a file of one id repeated holds
    one id here, not millions). Sorts ``hashes`` in place."""
    hashes.sort()
    same = hashes[1:] == hashes[:-1]
    if not same.any():
        return True
    suspects, seen = np.unique(hashes[1:][same]), set()
    for chunk in column.chunks:
        for value in chunk.to_numpy(zero_copy_only=False)[np.isin(hasher(chunk), suspects)]:
            if value in seen:
                return False
            seen.add(value)
    return True


def _sink(role: str, arrow_type, n_rows: int, check_ids: bool) -> _Sink:
    import pyarrow as pa

    if role == "ids":
        return _RowIds(n_rows, check_ids)
    if role == "slice":
        return _Slice(n_rows)
    if role in ("probability", "check"):
        return _Probabilities(np.float64 if role == "probability" else None, n_rows)
    dtype = pa.array([], type=arrow_type).to_numpy(zero_copy_only=False).dtype
    return _Integers(dtype, n_rows) if pa.types.is_integer(arrow_type) else _Sink(dtype, n_rows)

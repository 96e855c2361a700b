"""Malformed requests for the gate, from a seed, sent side by side to a gated and a plain MLflow server.

Shared by ``tests/gate/test_fuzz.py`` (≥ 500 requests) and ``benchmarks/bench_fuzz.py`` (5,000);
it needs only ``requests`` and the standard library, and talks to 127.0.0.1 only.

Every request starts from a template that would change production if it were valid (set
``champion`` to a version without evidence, archive or delete the production version, an audited
override with ``force``) and then breaks it in one way: a wrong type, a bad version, a huge
string, a NUL byte, a lone surrogate, invalid UTF-8, a body that is not JSON or is nested
100,000 deep, the wrong content type or method, a missing field, an unknown model, odd query
strings. Mutations only ever put *invalid* values into the fields that would make a template
dangerous (``force``, ``reason``, ``version`` on the override), so a correct gate refuses or
rejects every one of them and production never moves. (A rollback that gets through answers 409:
only one version was ever approved, so there is nothing to roll back to.)

The verdict compares each request's answer on both servers: a 5xx from the gated server that
the plain server does not also give is caused by the plugin; on the plugin's own routes (plain
MLflow has none) any 5xx, and any error that is not a JSON ``{"error_code", "message"}``, is.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import requests

from registry_hooks.contract import API_PREFIX, TAG_VERDICT

MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
TIMEOUT_S = 60
DEFAULT_SEED = 8


@dataclass(frozen=True)
class Target:
    """The model under attack: ``production`` holds champion + Production, ``candidate`` has no evidence."""

    name: str
    production: str
    candidate: str


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # without the prefix for MLflow's routes
    template: Callable[[Target], dict[str, Any]]
    plugin: bool = False


ROUTES = (
    Route("POST", "/registered-models/alias", lambda t: {"name": t.name, "alias": "champion", "version": t.candidate}),
    Route("DELETE", "/registered-models/alias", lambda t: {"name": t.name, "alias": "champion"}),
    Route("POST", "/model-versions/transition-stage",
          lambda t: {"name": t.name, "version": t.candidate, "stage": "Production", "archive_existing_versions": True}),
    Route("DELETE", "/model-versions/delete", lambda t: {"name": t.name, "version": t.production}),
    Route("DELETE", "/registered-models/delete", lambda t: {"name": t.name}),
    Route("POST", "/registered-models/rename", lambda t: {"name": t.name, "new_name": t.name + "-moved"}),
    Route("POST", "/model-versions/set-tag",
          lambda t: {"name": t.name, "version": t.production, "key": TAG_VERDICT, "value": "refuse"}),
    Route("DELETE", "/model-versions/delete-tag", lambda t: {"name": t.name, "version": t.production, "key": TAG_VERDICT}),
    Route("PATCH", "/model-versions/update", lambda t: {"name": t.name, "version": t.production, "description": "fuzz"}),
    Route("GET", "/explain", lambda t: {"name": t.name, "version": t.candidate}, plugin=True),
    Route("GET", "/history", lambda t: {"name": t.name, "limit": "5"}, plugin=True),
    Route("GET", "/policy", lambda t: {"name": t.name}, plugin=True),
    Route("GET", "/baseline", lambda t: {"name": t.name}, plugin=True),
    Route("POST", "/promote", lambda t: {"name": t.name, "version": t.candidate, "force": True, "reason": "fuzz"}, plugin=True),
    Route("POST", "/rollback", lambda t: {"name": t.name, "reason": "fuzz"}, plugin=True),
    Route("POST", "/feedback", lambda t: {"name": t.name, "items": [{"request_id": "fuzz-1", "label": "nothing"}],
                                          "partial": True}, plugin=True),
    Route("GET", "/feedback", lambda t: {"name": t.name, "max_results": "5"}, plugin=True),
    Route("POST", "/autopilot/lease", lambda t: {"name": t.name, "holder": "fuzz", "action": "renew", "ttl_s": 5,
                                                 "generation": "1"}, plugin=True),
    Route("GET", "/autopilot/lease", lambda t: {"name": t.name}, plugin=True),
)

# -- value pools: every entry is invalid for its field (or names something that does not exist) ---

BAD_VERSIONS = ["abc", "1.0", "²", "١", "１", "٣", "9" * 25, "9" * 5000, "1\x00", " 1", "1 ", "+1", "1_0", "0x1",
                "1e3", "", "  ", "2147483648", "-2147483649", "0", "-1", "99999", "1/2", "\ud800"]
BAD_FLAGS = ["false", "true", "0", "1", "", "yes", "False", 0, 1, 0.0, ["x"], [], {}, {"a": 1}]
BAD_REASONS = ["", "   ", "\x00", "why\x00not", "\ud800", "r" * 2001, "\n\t"]
BAD_LIMITS = ["0", "-1", "10001", "1e3", "abc", "²", "１", "", "9" * 30, "5.0"]
WRONG_TYPES = [0, 7, -1, 3.5, 1e308, 10**30, [], ["x"], [1, 2], {}, {"a": 1}, True, False]
ODD_STRINGS = ["", " ", "\x00", "x\x00y", "\ud800", "\udfff\ud800", "\u202egnp.exe", "../../etc/passwd", "%00", "a/b",
               "a:b", "\n", "💥" * 10, "ＣＨＡＭＰＩＯＮ", "сhampion", "'; DROP TABLE registered_models; --", "null"]
FIELD_POOLS = {
    "version": BAD_VERSIONS + WRONG_TYPES,
    "force": BAD_FLAGS,
    "archive_existing_versions": BAD_FLAGS,
    "reason": BAD_REASONS + WRONG_TYPES,
    "limit": BAD_LIMITS + WRONG_TYPES,
    "partial": BAD_FLAGS,
    # feedback items: not objects, ids and labels of every wrong shape, duplicates, unknown fields
    "items": WRONG_TYPES + ODD_STRINGS + [[{"request_id": s, "label": "nothing"}] for s in ODD_STRINGS]
    + [[{"request_id": "fuzz-1", "label": v} for v in WRONG_TYPES[:6]], [{"request_id": "a", "flag": "maybe"}] * 2,
       [{"request_id": "a", "label": "x" * 300, "note": "n" * 3000, "extra": 1}], [None], [[]], [{}]],
}
# not JSON by MLflow's rule (the media type must be application/json; parameters do not count)
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
                 "application/json-patch+json", "application/jsonx", "", None]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True)
class FuzzRequest:
    kind: str
    method: str
    path: str
    plugin: bool
    query: str = ""
    body: bytes | None = None
    content_type: str | None = None

    def describe(self) -> str:
        body = (self.body or b"")[:160]
        return f"[{self.kind}] {self.method} {self.path}{'?' + self.query[:120] if self.query else ''} body={body!r}"


# -- mutations: each takes (rng, route, template fields, target) and returns a request ----------------


def _dumps(fields: Any) -> bytes:
    """JSON as any client would send it: non-ASCII escaped, so lone surrogates survive as \\udXXX."""
    return json.dumps(fields).encode()


def _request(kind: str, route: Route, fields: dict[str, Any], prefix: str, **parts) -> FuzzRequest:
    """``fields`` as a GET query string or a JSON body, unless ``parts`` override them."""
    path = prefix + route.path
    if route.method == "GET" and not {"body", "query"} & parts.keys():
        parts["query"] = _query(fields)
    elif route.method != "GET" and not {"body", "query"} & parts.keys():
        parts |= {"body": _dumps(fields), "content_type": "application/json"}
    return FuzzRequest(kind, parts.pop("method", route.method), path, route.plugin, **parts)


def _query(fields: dict[str, Any]) -> str:
    """A query string; non-strings as their JSON text (what a careless client would send)."""
    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)
    return "&".join(f"{quote(k)}={quote(text(v).encode('utf-8', 'surrogatepass'))}" for k, v in fields.items())


def _pool(name: str) -> list[Any]:
    return FIELD_POOLS.get(name, ODD_STRINGS + WRONG_TYPES)


def m_bad_field(rng, route, fields, target, prefix):
    key = rng.choice(sorted(fields))
    return _request(f"bad_{key}" if key in FIELD_POOLS else "bad_field", route, fields | {key: rng.choice(_pool(key))}, prefix)


def bad_typed_field(key: str):
    """The mutation that gives a field with a rule of its own (version, force, reason, ...) a value from its pool."""
    def mutation(rng, route, fields, target, prefix):
        return _request(f"bad_{key}", route, fields | {key: rng.choice(FIELD_POOLS[key])}, prefix)
    return mutation


def m_bad_version(rng, route, fields, target, prefix):
    if "version" not in fields:
        return m_bad_field(rng, route, fields, target, prefix)
    return _request("bad_version", route, fields | {"version": rng.choice(BAD_VERSIONS)}, prefix)


def m_null(rng, route, fields, target, prefix):
    key = rng.choice(sorted(fields))  # a null force is "no override": a gated promotion, refused
    return _request("null_field", route, fields | {key: None}, prefix)


def m_missing(rng, route, fields, target, prefix):
    keys = sorted(fields)
    dropped = set(rng.sample(keys, rng.randint(1, len(keys))))
    return _request("missing_field", route, {k: v for k, v in fields.items() if k not in dropped}, prefix)


def m_unknown_model(rng, route, fields, target, prefix):
    name = rng.choice([f"no-such-model-{rng.randrange(10**6)}", target.name + "-x", "x" * 300, target.name + "\x00"])
    return _request("unknown_model", route, fields | {"name": name}, prefix)


def m_huge(rng, route, fields, target, prefix):
    key = rng.choice(sorted(fields))
    size = rng.choice([3_000, 70_000, 1_000_000])
    return _request("huge_string", route, fields | {key: rng.choice("x9é") * size}, prefix)


def m_nul(rng, route, fields, target, prefix):
    key = rng.choice([k for k, v in fields.items() if isinstance(v, str)])
    value = fields[key]
    cut = rng.randint(0, len(value))
    return _request("nul_byte", route, fields | {key: value[:cut] + "\x00" + value[cut:]}, prefix)


def m_surrogate(rng, route, fields, target, prefix):
    key = rng.choice([k for k, v in fields.items() if isinstance(v, str)])
    return _request("lone_surrogate", route, fields | {key: fields[key] + rng.choice(["\ud800", "\udc00", "\udbff"])}, prefix)


def m_invalid_utf8(rng, route, fields, target, prefix):
    raw = _dumps(fields)
    cut = rng.randint(1, len(raw) - 1)
    body = raw[:cut] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + raw[cut:]
    return _request("invalid_utf8", route, fields, prefix, body=body, content_type="application/json")


def m_not_json(rng, route, fields, target, prefix):
    raw = _dumps(fields)
    body = rng.choice([raw[: rng.randint(1, len(raw) - 1)], raw.replace(b'"', b"'"), b"name=" + target.name.encode(),
                       b"{name: x}", b"", b" ", b"\x00" * 16, b"NaN", b"{\"name\": " + b"1" * 5000 + b"}", raw + b"garbage"])
    return _request("not_json", route, fields, prefix, body=body, content_type="application/json")


def m_top_level(rng, route, fields, target, prefix):
    value = rng.choice([[], [fields], "x", 1, None, True, json.dumps(fields | {"version": "abc"}), json.dumps(fields | {"force": "yes"})])
    return _request("top_level_not_object", route, fields, prefix, body=_dumps(value), content_type="application/json")


def m_deep(rng, route, fields, target, prefix):
    depth = rng.choice([100, 5_000, 100_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    nested = opener * depth + "1" + closer * depth
    if rng.random() < 0.5:
        body = nested
    else:
        key = rng.choice(sorted(fields))
        body = _dumps({k: v for k, v in fields.items() if k != key})[:-1].decode() + f', "{key}": {nested}}}'
    return _request("deep_nesting", route, fields, prefix, body=body.encode(), content_type="application/json")


def m_content_type(rng, route, fields, target, prefix):
    return _request("content_type", route, fields, prefix, body=_dumps(fields), content_type=rng.choice(CONTENT_TYPES))


def m_method(rng, route, fields, target, prefix):
    method = rng.choice([m for m in METHODS if m != route.method])
    return _request("wrong_method", route, fields, prefix, method=method, body=_dumps(fields | {"version": "abc"}),
                    content_type="application/json")


def m_fields_in_query(rng, route, fields, target, prefix):
    """A body route given its fields in the query string (and no body)."""
    return _request("fields_in_query", route, fields, prefix, query=_query(fields))


def m_query(rng, route, fields, target, prefix):
    """Query-string variants for GET routes: repeats, empty values, raw escapes, stray separators."""
    base = _query(fields)
    key = rng.choice(sorted(fields))
    variant = rng.choice([
        f"{base}&{key}=%00", f"{key}=%FF%FE&{base}", f"{key}=&{base}", f"{base}&{key}", f"{base}&{key}=%ED%A0%80",
        f"{key}={quote('１')}&{base}", f"{base};{key}=x", f"{base}&&&=&=x", "", "=", "&",
        f"{base}&{key}={'%41' * 3000}", f"{key}[]=1&{key}[]=2", f"{key}=%25%30%30", base.replace("=", "=%20", 1),
    ])
    return _request("query_variant", route, fields, prefix, query=variant)


def m_bad_type_everywhere(rng, route, fields, target, prefix):
    return _request("all_wrong_types", route, {k: rng.choice(_pool(k)) for k in fields}, prefix)


def m_extra_with_bad(rng, route, fields, target, prefix):
    """Unknown fields (and a camelCase twin) next to a broken one."""
    broken = m_bad_field(rng, route, fields, target, prefix)
    extra = {"unknown": {"a": [1, 2]}, "Name": target.name, "forceOverride": True}
    if broken.body is None or broken.method == "GET":
        return _request("extra_fields", route, fields | {"version": "abc"} | extra, prefix)
    try:
        mutated = json.loads(broken.body)
    except ValueError:
        return broken
    return _request("extra_fields", route, mutated | extra, prefix)


BODY_MUTATIONS = (m_bad_field, m_bad_version, m_null, m_missing, m_unknown_model, m_huge, m_nul, m_surrogate, m_invalid_utf8,
                  m_not_json, m_top_level, m_deep, m_content_type, m_method, m_fields_in_query, m_bad_type_everywhere,
                  m_extra_with_bad)
QUERY_MUTATIONS = (m_bad_field, m_bad_version, m_null, m_missing, m_unknown_model, m_huge, m_nul, m_surrogate, m_query,
                   m_query, m_bad_type_everywhere, m_method, m_extra_with_bad)


def all_routes() -> list[tuple[Route, str]]:
    """Every (route, prefix) pair: the gate's routes once, MLflow's gated routes under both prefixes."""
    return [(r, API_PREFIX) for r in ROUTES if r.plugin] + [
        (r, prefix) for prefix in MLFLOW_PREFIXES for r in ROUTES if not r.plugin
    ]


def generate(seed: int, count: int, target: Target) -> list[FuzzRequest]:
    """``count`` malformed requests, the same for the same seed.

    Routes take turns; each route works through its mutations in a shuffled cycle, so a few hundred
    requests already try every mutation on every route.
    """
    rng = random.Random(seed)
    routes = all_routes()
    cycles: dict[int, list] = {}
    out = []
    for i in range(count):
        route, prefix = routes[i % len(routes)]
        cycle = cycles.setdefault(i % len(routes), [])
        if not cycle:
            cycle.extend(QUERY_MUTATIONS if route.method == "GET" else BODY_MUTATIONS)
            cycle.extend(bad_typed_field(key) for key in sorted(route.template(target)) if key in FIELD_POOLS)
            rng.shuffle(cycle)
        out.append(cycle.pop()(rng, route, route.template(target), target, prefix))
    return out


# -- sending and judging ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (timeout, connection reset twice)
    json_error: bool  # the body is {"error_code": str, "message": str}
    html: bool
    text: str
    retried: bool = False  # the first try's connection was reset; this is the second try's answer


def send(session: requests.Session, base_url: str, request: FuzzRequest) -> Answer:
    """One request exactly as generated (the query string is sent as is, escapes included).

    A connection reset is tried once more on a fresh connection: uvicorn answers a request line
    over its limit (the 6 MB query strings) with a 400 and closes the socket while the client may
    still be sending, so the client sometimes reads a reset instead of the 400 — on either server,
    by timing alone. The retry's answer is judged like any other, and counted (``retried``); a
    server that really stopped answering fails both tries."""
    host = urlsplit(base_url).hostname
    if host != "127.0.0.1":
        raise ValueError(f"the fuzzer only talks to 127.0.0.1, not {host}")
    url = f"{base_url}{request.path}" + (f"?{request.query}" if request.query else "")
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    try:
        response = session.request(request.method, url, data=request.body, headers=headers, timeout=TIMEOUT_S)
    except requests.ConnectionError:
        try:
            response = requests.request(request.method, url, data=request.body, headers=headers, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            return Answer(0, False, False, f"{type(exc).__name__}: {exc}", retried=True)
        return _answer(response, retried=True)
    except requests.RequestException as exc:
        return Answer(0, False, False, f"{type(exc).__name__}: {exc}")
    return _answer(response)


def _answer(response: requests.Response, retried: bool = False) -> Answer:
    return Answer(response.status_code, _is_json_error(response), "html" in response.headers.get("content-type", ""),
                  response.text[:300], retried)


def _is_json_error(response: requests.Response) -> bool:
    try:
        payload = response.json()
    except ValueError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("error_code"), str) and isinstance(payload.get("message"), str)


@dataclass
class Report:
    """Status histograms of both servers and every answer the plugin is to blame for."""

    requests: int = 0
    seconds: float = 0.0
    gated: Counter = field(default_factory=Counter)
    plain: Counter = field(default_factory=Counter)
    by_kind: dict[str, Counter] = field(default_factory=dict)
    mlflow_own_5xx: Counter = field(default_factory=Counter)  # both servers 5xx: MLflow's behaviour, not the plugin's
    plugin_caused: list[str] = field(default_factory=list)
    retried: Counter = field(default_factory=Counter)  # connection resets tried again, per server

    def add(self, request: FuzzRequest, gated: Answer, plain: Answer) -> None:
        self.requests += 1
        self.retried.update(side for side, answer in (("gated", gated), ("plain", plain)) if answer.retried)
        self.gated[gated.status] += 1
        self.plain[plain.status] += 1
        self.by_kind.setdefault(request.kind, Counter())[gated.status] += 1
        blame = _blame(request, gated, plain)
        if blame:
            self.plugin_caused.append(f"{request.describe()} -> gated {gated.status} {gated.text[:200]!r}, "
                                      f"plain {plain.status}: {blame}")
        elif gated.status >= 500:
            self.mlflow_own_5xx[f"{request.kind} {request.method} {request.path}"] += 1

    def to_dict(self) -> dict[str, Any]:
        def hist(counter: Counter) -> dict[str, int]:
            return {str(k): counter[k] for k in sorted(counter)}
        return {"requests": self.requests, "seconds": round(self.seconds, 1), "gated": hist(self.gated),
                "plain": hist(self.plain), "plugin_caused_5xx_or_bad_errors": len(self.plugin_caused),
                "connection_resets_retried": {side: self.retried[side] for side in ("gated", "plain")},
                "mlflow_own_5xx": dict(self.mlflow_own_5xx), "gated_by_kind": {k: hist(v) for k, v in sorted(self.by_kind.items())},
                "failures": self.plugin_caused[:50]}


def _blame(request: FuzzRequest, gated: Answer, plain: Answer) -> str | None:
    """Why this answer is the plugin's fault, or None."""
    if gated.status == 0:
        return "no answer from the gated server"
    if request.plugin:
        if (gated.status, gated.text) == (plain.status, plain.text) and gated.status < 500:
            return None  # the HTTP server refused it (a request line over its limit) before any app saw it
        if gated.status >= 500:
            return "5xx on a plugin route"
        if gated.status >= 300 and not (gated.status < 500 and gated.json_error):
            return "a plugin route's error is not JSON {error_code, message}"
        return None
    if gated.status >= 500 and not plain.status >= 500:
        return "5xx that plain MLflow does not give"
    return None


def run(gated_url: str, plain_url: str, batch: list[FuzzRequest], *, time_budget_s: float) -> Report:
    """Send every request to both servers at once; stops when the time budget is spent."""
    report = Report()
    started = time.monotonic()
    with requests.Session() as gated_session, requests.Session() as plain_session, ThreadPoolExecutor(2) as pool:
        for request in batch:
            if time.monotonic() - started > time_budget_s:
                break
            gated = pool.submit(send, gated_session, gated_url, request)
            plain = pool.submit(send, plain_session, plain_url, request)
            report.add(request, gated.result(), plain.result())
    report.seconds = time.monotonic() - started
    return report


def histogram_lines(report: Report) -> list[str]:
    """The status histograms, one line per server, for printing."""
    return [f"{label:>6}: " + ", ".join(f"{status}×{count}" for status, count in sorted(counter.items()))
            for label, counter in (("gated", report.gated), ("plain", report.plain))]

"""Malformed requests against a live gated server, side by side with plain MLflow (SQLite and PostgreSQL).

520 seeded requests over the gate's routes and MLflow's gated routes on ``/api/`` and
``/ajax-api/`` (``benchmarks/fuzz_requests.py`` says what they are). The test passes only if the
plugin causes no 5xx that plain MLflow does not also give, its own routes answer every error as
a JSON 4xx, production has not moved and the audit log gained no approving decision.
``benchmarks/bench_fuzz.py`` runs the same generator with 5,000 requests.
"""

from __future__ import annotations

from benchmarks.fuzz_requests import BODY_MUTATIONS, DEFAULT_SEED, QUERY_MUTATIONS, generate, histogram_lines, run

REQUESTS = 520
TIME_BUDGET_S = 90


def test_generator_is_deterministic_and_covers_every_route_and_mutation():
    from benchmarks.fuzz_requests import Target, all_routes

    target = Target("m", "1", "2")
    batch = generate(DEFAULT_SEED, REQUESTS, target)
    assert batch == generate(DEFAULT_SEED, REQUESTS, target) != generate(DEFAULT_SEED + 1, REQUESTS, target)
    assert {(r.method, r.path) for r in batch} >= {(route.method, prefix + route.path) for route, prefix in all_routes()}
    kinds = {r.kind for r in batch}
    assert {"bad_version", "huge_string", "nul_byte", "lone_surrogate", "invalid_utf8", "not_json", "deep_nesting",
            "content_type", "missing_field", "unknown_model", "query_variant", "wrong_method", "bad_force",
            "bad_reason"} <= kinds, kinds
    assert len(BODY_MUTATIONS) + len(QUERY_MUTATIONS) > 20


def test_malformed_requests_cause_no_plugin_5xx_and_move_nothing(pair):
    approved_before = pair.approved_decisions()
    report = run(pair.gated.url, pair.plain.url, generate(DEFAULT_SEED, REQUESTS, pair.target), time_budget_s=TIME_BUDGET_S)
    print(f"\n{report.requests} requests in {report.seconds:.1f} s", *histogram_lines(report), sep="\n")
    assert report.requests == REQUESTS, f"only {report.requests} requests in {TIME_BUDGET_S} s"
    assert not report.plugin_caused, "\n".join(report.plugin_caused[:20])
    assert report.gated[400] > REQUESTS / 3  # the requests were parsed and refused, not waved through
    assert pair.scenario.production() == (pair.target.production, [pair.target.production])
    assert pair.approved_decisions() == approved_before

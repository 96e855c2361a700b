"""``gatekeeper``: promote, explain, history and rollback from a terminal or a script.

Exit codes are for scripts: 0 the promotion (or rollback) happened or would happen, 1 the gate
refused (or ``audit verify`` found the log changed), 2 the request itself failed (bad input,
unknown model, server unreachable; for ``feedback``, any rejected item).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

from gatekeeper_cli import feedback as feedback_cli
from gatekeeper_cli.client import GatekeeperClient, GatekeeperError, PromotionRefused
from gatekeeper_cli.sets import print_sets
from gatekeeper_cli.sets import register as register_set
from registry_hooks.names import version_number

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2
_MARKS = {"pass": "PASS", "fail_worse": "FAIL", "fail_insufficient": "FAIL", "warn": "WARN", "skip": "skip"}


def _version(text: str) -> str:
    number = version_number(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"a model version is a positive integer, got {text!r}")
    return str(number)


_REASON_WIDTH = 160


def _print_override(payload: dict[str, Any], out) -> None:
    """An override must never read like an ordinary pass or fail: say who moved production past the gate."""
    candidate = payload["candidate"]
    who = f"OVERRIDDEN by {payload.get('actor') or 'anonymous'} (audit decision #{payload.get('decision_id')})"
    if payload["verdict"] == "promote":
        print(f"{who}: {candidate['name']} v{candidate['version']} is in production; the gate would have approved it too",
              file=out)
        return
    print(f"{who}: {candidate['name']} v{candidate['version']} is in production, but the gate would have refused it "
          f"({payload['verdict']}) because:", file=out)
    for reason in payload.get("reasons", []):
        print(f"  - {reason}", file=out)


def _print_decision(payload: dict[str, Any], out) -> None:
    if payload.get("verdict") == "unchanged":
        print("unchanged: " + "; ".join(payload.get("reasons", [])), file=out)
        return
    overridden = payload.get("action") == "override"
    if overridden:
        _print_override(payload, out)
    candidate, baseline = payload["candidate"], payload["baseline"]
    against = f"v{baseline['version']} ({baseline['source']})" if baseline.get("version") else baseline["source"]
    print(f"{candidate['name']} v{candidate['version']} vs baseline {against}", file=out)
    for check in payload.get("checks", []):
        print(f"  [{_MARKS.get(check['outcome'], check['outcome'])}] {check['message']}", file=out)
    print(f"verdict: {payload['verdict']}" + (" (overridden: promoted anyway)" if overridden else ""), file=out)


def _compact(text: str) -> str:
    """One line of at most ``_REASON_WIDTH`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= _REASON_WIDTH else line[: _REASON_WIDTH - 1] + "…"


def _print_history(decisions: list[dict[str, Any]], out) -> None:
    if not decisions:
        print("no decisions recorded", file=out)
        return
    for d in decisions:
        when = datetime.fromtimestamp(d["created_at"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        baseline = f"v{d['baseline_version']}" if d.get("baseline_version") else "-"
        print(
            f"#{d['id']:<5} {when}Z  {d['action']:<8} v{d['candidate_version']:<4} vs {baseline:<5} "
            f"{d['verdict']:<29} {d['target']:<32} by {d.get('actor') or 'anonymous'}",
            file=out,
        )
        for reason in d["reasons"]:  # every failing check: a drift refusal must not read as an accuracy one
            print(f"        - {_compact(reason)}", file=out)


def _print_audit(report: dict[str, Any], out) -> None:
    """One line per problem, then the verdict on the whole log."""
    for problem in report["problems"]:
        where = f"#{problem['decision_id']}" if problem.get("decision_id") is not None else "-"
        print(f"{problem['kind']:<13} {problem.get('model_name') or '(all models)'} {where}: {problem['message']}",
              file=out)
    legacy = f", {report['legacy']} written before the chain" if report.get("legacy") else ""
    counted = f"{report['rows']} decisions{legacy}, {report['models']} models"
    if report["ok"]:
        print(f"audit log intact ({counted})", file=out)
    else:
        print(f"audit log CHANGED outside the gate: {len(report['problems'])} problems ({counted})", file=out)


def _sets(client: GatekeeperClient, args) -> dict[str, Any]:
    if args.sets_command == "register":
        return {"sets": [register_set(client, args.name, args.data_uri, args.label, args.description)]}
    return {"sets": client.sets(args.name)}


def _feedback(client: GatekeeperClient, args) -> dict[str, Any]:
    if args.feedback_command == "add":
        items = [feedback_cli.item(args.request_id, args.label, args.flag, args.note)]
        return feedback_cli.send(client, args.model, items, partial=False)
    if args.feedback_command == "import":
        return feedback_cli.send(client, args.model, feedback_cli.items_from_file(args.file), partial=args.partial)
    return {"feedback": client.feedback(args.model, args.since, args.until)}


def _when(text: str) -> datetime:
    """An ISO-8601 moment; one without a zone is UTC (the inference log's zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give an ISO-8601 time such as 2026-12-05T14:00Z, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _add_feedback_parser(commands) -> None:
    found = commands.add_parser("feedback", help="labels and flags on logged predictions").add_subparsers(
        dest="feedback_command", required=True)
    add = found.add_parser("add", help="label or flag one prediction by its request id")
    add.add_argument("model")
    add.add_argument("request_id")
    add.add_argument("--label", help="the right class (- clears it)")
    add.add_argument("--flag", help="wrong or unsure (- clears it)")
    add.add_argument("--note", help="free text (- clears it)")
    imported = found.add_parser("import", help="a CSV or Parquet table: request_id and any of label, flag, note")
    imported.add_argument("model")
    imported.add_argument("file")
    imported.add_argument("--partial", action="store_true", help="write the valid rows even if some are rejected")
    listing = found.add_parser("list", help="the newest feedback on each prediction")
    listing.add_argument("model")
    listing.add_argument("--since", type=_when, help="predictions made at or after (ISO-8601)")
    listing.add_argument("--until", type=_when, help="predictions made before (ISO-8601)")


def _verified(payload: dict[str, Any]) -> bool:
    """Every verification the policy asks for passed (none asked: nothing to verify, also a pass)."""
    return all(c["outcome"] == "pass" for c in payload.get("checks", []) if c["name"].startswith("verification"))


def _verify_worker(client: GatekeeperClient, args) -> int:
    """The verifier is a program of its own (it loads models: torch, scikit-learn…), started by
    module name like the server starts it; it needs the database, not a server URL."""
    import subprocess

    from registry_hooks.contract import VERIFIER_MODULE

    if client.remote:
        print("gatekeeper: verify-worker reads the gate's database: give --tracking-uri the database URI the "
              "server uses (e.g. postgresql+psycopg2://…), not its URL", file=sys.stderr)
        return EXIT_ERROR
    command = [sys.executable, "-m", VERIFIER_MODULE, "--db-uri", client.tracking_uri, "--worker",
               "--poll", str(args.poll)] + (["--once"] if args.once else [])
    if args.artifacts_destination:
        command += ["--artifacts-destination", args.artifacts_destination]
    return subprocess.call(command)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatekeeper", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", help="server URL or database URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--json", action="store_true", help="print the server's JSON answer")
    commands = parser.add_subparsers(dest="command", required=True)
    promote = commands.add_parser("promote", help="promote a version to production through the gate")
    promote.add_argument("model")
    promote.add_argument("version", type=_version)
    promote.add_argument("--force", action="store_true", help="audited override (admins only, if the policy allows)")
    promote.add_argument("--reason", help="why: required with --force, written to the audit log")
    explain = commands.add_parser("explain", help="dry run of the gate: every check and its numbers, nothing changes")
    explain.add_argument("model")
    explain.add_argument("version", type=_version)
    history = commands.add_parser("history", help="the audit log of a model, newest first")
    history.add_argument("model")
    history.add_argument("--limit", type=int, default=20)
    rollback = commands.add_parser("rollback", help="move production back to the previously approved version")
    rollback.add_argument("model")
    rollback.add_argument("--reason")
    policy = commands.add_parser("policy", help="the effective policy for a model")
    policy.add_argument("model")
    sets = commands.add_parser("sets", help="the evaluation sets evidence must be computed on").add_subparsers(
        dest="sets_command", required=True)
    register = sets.add_parser("register", help="record a new version of a set (under basic-auth: admins, or the policy's registrars)")
    register.add_argument("name")
    register.add_argument("data_uri", help="Parquet or CSV: a path (uploaded when the server is remote) or a URI")
    register.add_argument("--label", default="label", help="the label column (default: label)")
    register.add_argument("--description")
    listing = sets.add_parser("list", help="the current version of every set, or every version of one")
    listing.add_argument("name", nargs="?")
    verifying = commands.add_parser("verify", help="have the candidate's evidence verified (re-scored) and wait for it")
    verifying.add_argument("model")
    verifying.add_argument("version", type=_version)
    verifying.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    worker = commands.add_parser("verify-worker", help="re-score evidence for the gate: poll the verification queue")
    worker.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the queue")
    worker.add_argument("--once", action="store_true", help="verify what is pending now, then exit")
    worker.add_argument("--artifacts-destination", help="the server's --artifacts-destination (models and sets stored "
                        "as mlflow-artifacts:/ are read from there)")
    audit = commands.add_parser("audit", help="the audit log itself")
    verify = audit.add_subparsers(dest="audit_command", required=True).add_parser(
        "verify", help="recompute the audit chain: exit 1 if a decision was edited, deleted or reordered")
    verify.add_argument("model", nargs="?", help="one model (default: every model; admins only under basic-auth)")
    _add_feedback_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "promote" and args.force and not (args.reason or "").strip():
        print("gatekeeper: --force needs --reason (it is written to the audit log)", file=sys.stderr)
        return EXIT_ERROR
    client = GatekeeperClient(args.tracking_uri)
    try:
        if args.command == "promote":
            payload = client.promote(args.model, args.version, force=args.force, reason=args.reason)
        elif args.command == "explain":
            payload = client.explain(args.model, args.version)
        elif args.command == "rollback":
            payload = client.rollback(args.model, args.reason)
        elif args.command == "policy":
            payload = client.policy(args.model)
        elif args.command == "audit":
            payload = client.audit_verify(args.model)
        elif args.command == "sets":
            payload = _sets(client, args)
        elif args.command == "verify-worker":
            return _verify_worker(client, args)
        elif args.command == "verify":
            payload = client.wait_for_verification(args.model, args.version, args.timeout)
        elif args.command == "feedback":
            payload = _feedback(client, args)
        else:
            payload = {"decisions": client.history(args.model, args.limit)}
    except PromotionRefused as exc:
        print(exc.payload.get("message") or str(exc), file=sys.stderr)
        return EXIT_ERROR if args.command == "audit" else EXIT_REFUSED  # a 403 there is permission, not the log
    except (GatekeeperError, ValueError) as exc:  # ValueError: a set's data unusable (SetError, DataError)
        if isinstance(exc, GatekeeperError) and exc.payload.get("items"):
            feedback_cli.print_rejection(exc, sys.stderr)  # which items, and why
        else:
            print(f"gatekeeper: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - e.g. connection refused: one line, not a traceback
        print(f"gatekeeper: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json or args.command == "policy":
        print(json.dumps(payload, indent=2, default=str))
    elif args.command == "history":
        _print_history(payload["decisions"], sys.stdout)
    elif args.command == "audit":
        _print_audit(payload, sys.stdout)
    elif args.command == "sets":
        print_sets(payload["sets"], sys.stdout)
    elif args.command == "feedback":
        (feedback_cli.print_listing(payload["feedback"], sys.stdout) if "feedback" in payload
         else feedback_cli.print_answer(payload, sys.stdout))
    else:
        _print_decision(payload, sys.stdout)
    if args.command == "explain" and payload.get("verdict") not in ("promote", "unchanged"):
        return EXIT_REFUSED
    if args.command == "verify" and not _verified(payload):
        return EXIT_REFUSED
    if args.command == "audit" and not payload["ok"]:
        return EXIT_REFUSED
    if args.command == "feedback" and payload.get("rejected"):
        return EXIT_ERROR  # --partial wrote the valid rows; the rejected ones still need fixing
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

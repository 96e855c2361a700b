"""``python -m projects.autopilot`` (``mlflow run . -e autopilot``): the loop, with no human command.

Needs a gated server (``MLFLOW_TRACKING_URI=http://…``): the lease, the feedback and every
decision live there. With ``--simulate-weeks 0`` it watches the real inference log: a cycle every
``--every-s`` seconds over the last ``--window-days`` (``projects.autopilot.pilot``), people
labelling its queues in between, until stopped (or ``--cycles`` N). With ``--simulate-weeks N`` it runs the reference task's season for N weeks
(``projects.autopilot.simulate``) and exits. The traffic is sent over HTTP to a real
``mlflow models serve`` of the champion that the autopilot starts and restarts on each promotion
(``--serving serve``, the default; ``projects.autopilot.serving``) or scored in this process
(``--serving in-process``); either way it is logged with its pixels
(``GATEKEEPER_LOG_INPUTS=full`` unless set), to the inference log the server reads
(``GATEKEEPER_INFERENCE_LOG``: start both from the same folder, or set it alike for both).

Exit status: 0 the weeks ran (whatever the gate decided), 1 a step failed or the lease was lost
(re-run it: it resumes the open cycle), 2 a malformed command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from projects.autopilot.pilot import EXPERIMENT, Pilot, PilotConfig
from projects.cli_types import integer_at_least, number_in
from projects.mine.reasons import SELECTIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m projects.autopilot", description=__doc__.splitlines()[0])
    parser.add_argument("--registered-model", default="road-scenes")
    parser.add_argument("--simulate-weeks", type=integer_at_least(0), required=True,
                        help="weeks of the reference task's season to run; 0: live, watching the real inference log")
    parser.add_argument("--week-size", type=integer_at_least(100), default=2000, help="scenes of traffic a week")
    parser.add_argument("--shift-week", type=integer_at_least(0), default=2, help="the first rainy week")
    parser.add_argument("--budget", type=number_in(0, 1, "a fraction", low_open=True), default=0.02, help="share of a week's traffic to label")
    parser.add_argument("--selection", choices=SELECTIONS, default="reasons",
                        help="how mine picks the rows to label: by reason (default) or at random (a control)")
    parser.add_argument("--serving", choices=("serve", "in-process"), default="serve",
                        help="score the traffic through a real `mlflow models serve` of the champion that the autopilot "
                             "(re)starts when the gate promotes (default), or with mlflow.pyfunc in this process")
    parser.add_argument("--min-new-labels", type=integer_at_least(1), default=50)
    parser.add_argument("--schedule-weeks", type=integer_at_least(1), default=4)
    parser.add_argument("--train-size", type=integer_at_least(100), default=8000)
    parser.add_argument("--eval-size", type=integer_at_least(100), default=3000)
    parser.add_argument("--epochs", type=integer_at_least(1), default=15)
    parser.add_argument("--min-support", type=integer_at_least(1), default=50)
    parser.add_argument("--label-delay-s", type=number_in(0, 86_400, "seconds"), default=0.0)
    parser.add_argument("--ttl-s", type=integer_at_least(3), default=60, help="the lease's time to live")
    parser.add_argument("--seed", type=integer_at_least(0), default=0)
    parser.add_argument("--data-dir", default="data/autopilot")
    parser.add_argument("--every-s", type=integer_at_least(1), default=3600, help="live: seconds between cycles")
    parser.add_argument("--cycles", type=integer_at_least(0), default=0, help="live: stop after N cycles (0: never)")
    parser.add_argument("--window-days", type=number_in(0, 366, "days", low_open=True), default=7.0, help="live: the log window a cycle reads")
    parser.add_argument("--training-set", default="",
                        help="live: the champion's training-set version folder, grown by curation (until a cycle made one)")
    return parser


def _experiment(client) -> tuple[str, str | None]:
    """The experiment the cycles go to and the run they hang under: the project's run under
    ``mlflow run`` (hidden from MLflow's fluent API from here on, so each step starts its own
    run instead of resuming it), else the ``autopilot`` experiment."""
    parent = os.environ.pop("MLFLOW_RUN_ID", None)
    if parent:
        return client.get_run(parent).info.experiment_id, parent
    found = client.get_experiment_by_name(EXPERIMENT)
    return (found.experiment_id if found else client.create_experiment(EXPERIMENT)), None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = PilotConfig(**{f.name: getattr(args, f.name) for f in fields(PilotConfig)})
    import mlflow

    from gatekeeper_cli.client import GatekeeperClient
    from projects.autopilot.lease import LeaseLost
    from registry_hooks.contract import is_server_uri
    from registry_hooks.inference_records import LOG_ENV, OFF, root_from_env

    uri = mlflow.get_tracking_uri()
    if not is_server_uri(uri):
        print(f"autopilot: needs a gated server (MLFLOW_TRACKING_URI=http://…), got {uri!r}", file=sys.stderr)
        return 2
    if root_from_env() is None:
        print(f"autopilot: reads what production saw from the inference log, and {LOG_ENV} is '{OFF}'", file=sys.stderr)
        return 2
    os.environ.setdefault("GATEKEEPER_LOG_INPUTS", "full")  # curation needs the pixels of the rows labelled
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mlflow.MlflowClient()
    experiment_id, parent = _experiment(client)
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        Pilot(config, GatekeeperClient(uri), client, experiment_id, parent).fly()
    except LeaseLost as exc:
        print(f"autopilot: stopped: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a failed step: one line; a re-run resumes the cycle
        print(f"autopilot: a step failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The season, measured: does the loop bring the rain slice back, and is it worth more than labelling at random?

    .venv/bin/python benchmarks/bench_season.py                 # 8 weeks of 2,000 scenes, shift in week 2
    .venv/bin/python benchmarks/bench_season.py --weeks 10 --budget 0.02
    .venv/bin/python benchmarks/bench_season.py --quick         # a smoke run: 3 small weeks, 2 epochs

Three arms see the same simulated traffic (``projects.autopilot.simulate.Season``: summer, then from
``--shift-week`` on the rainy season with green cones four times as common):

* ``loop``: ``mlflow run . -e autopilot`` — mine by reason, label, curate, retrain, the gate;
* ``random``: the same autopilot with ``-P selection=random``: the same label budget spent on rows
  drawn at random (no slice rows, so no hard cases either);
* ``none``: no loop — the week-0 champion (the loop arm's bootstrap version) scores every week;
* ``ceiling``: not a loop but the yardstick — the same network trained on ``--train-size`` fully
  labelled scenes of the rainy season itself (at 2,000 scenes a week, four weeks of traffic, every
  row labelled), scoring every week. It shows how much of the rain gap any data can close: in the
  scene generator rain is harder than clear weather for every model.

Each autopilot arm gets its own gated ``mlflow server`` (SQLite, its own inference log), so the
arms share no evaluation set: the loop's hard cases never guard the random arm's candidates. Once
started, no command is given until the weeks are done. The policy is
``projects/autopilot_policy.yaml``: the reference task's policy with drift warning instead of
blocking (the file says why).

Per week and arm: the serving champion's accuracy on that week's traffic, overall and on rain,
clear, night and green cones (measured before the week's own retrain: a promotion shows the week
after), labels asked (share of the week's traffic), the week's verdict and its first reason.
Goal (issue 11): after the shift, rain accuracy within 2 points of clear weather within 3 weeks,
labelling ≤ 5 % of traffic, and better than random labelling. No assertions: the figures and the
goal's outcome go to ``benchmarks/results/season.json`` and a chart to ``docs/season.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from _common import ResultFile, machine_lines  # noqa: E402
from servers import MlflowServer  # noqa: E402

from projects.autopilot.cycles import TAG_CYCLE, TAG_OUTPUT, TAG_STATE, TAG_STEP, TAG_TRIGGER, TAG_WEEK  # noqa: E402
from registry_hooks.inference_records import LOG_ENV, OFF  # noqa: E402

MODEL = "road-scenes"
SLICES = ("all", "clear", "rain", "night", "green_cone")
CHART = REPO / "docs" / "season.png"
POLICY = REPO / "projects" / "autopilot_policy.yaml"
QUICK = {"weeks": 3, "week_size": 400, "shift_week": 1, "budget": 0.1, "train_size": 1200, "eval_size": 1000,
         "epochs": 2, "min_support": 20}
GOAL_POINTS, GOAL_WEEKS, GOAL_SHARE = 0.02, 3, 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--week-size", type=int, default=2000)
    parser.add_argument("--shift-week", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.05, help="share of a week's traffic labelled (goal: <= 5 %%)")
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--eval-size", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--min-support", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serving", choices=("serve", "in-process"), default="serve",
                        help="traffic through `mlflow models serve` (default) or scored in the autopilot's process")
    parser.add_argument("--quick", action="store_true", help="a smoke run of the benchmark itself")
    parser.add_argument("--keep", action="store_true", help="keep the arms' folders (printed) for a look in MLflow's UI")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def policy_file(folder: Path, quick: bool) -> Path:
    """The autopilot's policy; ``quick``: first releases from 30 % accuracy too (two epochs on a
    small set: a smoke run of the benchmark, not of the model)."""
    import yaml

    policy = yaml.safe_load(POLICY.read_text())
    if quick:
        policy["defaults"]["first_release"] = [{"metric": "accuracy", "min": 0.3}]
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def run_arm(name: str, selection: str, args: argparse.Namespace, folder: Path, policy: Path) -> dict:
    """One autopilot, started once, on its own gated server; the weeks read back from its runs."""
    folder.mkdir(parents=True)
    log = folder / "inference-log"
    backend = f"sqlite:///{folder / 'mlflow.db'}"
    with MlflowServer(folder / "server", backend, policy=policy, env={LOG_ENV: str(log)}) as server:
        params = {"simulate_weeks": args.weeks, "week_size": args.week_size, "shift_week": args.shift_week,
                  "budget": args.budget, "selection": selection, "train_size": args.train_size,
                  "eval_size": args.eval_size, "epochs": args.epochs, "min_support": args.min_support,
                  "seed": args.seed, "serving": args.serving, "data_dir": folder / "data"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(MLFLOW_TRACKING_URI=server.url, DO_NOT_TRACK="true", PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
                   **{LOG_ENV: str(log)})
        command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "autopilot", "--env-manager", "local",
                   "--experiment-name", "autopilot", *[a for k, v in params.items() for a in ("-P", f"{k}={v}")]]
        started = time.perf_counter()
        with open(folder / "autopilot.log", "w") as out:
            code = subprocess.run(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - started
        if code != 0:
            tail = (folder / "autopilot.log").read_text()[-3000:]
            raise RuntimeError(f"the {name} arm's autopilot exited with {code}:\n{tail}")
        weeks, bootstrap = read_weeks(server.url, args.week_size)
        return {"selection": selection, "seconds": round(seconds, 1), "bootstrap_version": bootstrap,
                "weeks": weeks, "no_loop": no_loop(server.url, bootstrap, args) if name == "loop" else None}


def _outputs(client, experiment_id: str, cycle_id: str) -> dict[str, dict]:
    steps = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{cycle_id}' AND attributes.status = 'FINISHED'",
                               max_results=100)
    return {s.data.tags[TAG_STEP]: json.loads(s.data.tags.get(TAG_OUTPUT, "{}")) for s in steps if TAG_STEP in s.data.tags}


def read_weeks(url: str, week_size: int) -> tuple[list[dict], str]:
    """Each simulated week as its cycle's steps recorded it; and the bootstrap's version."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    experiment_id = client.get_experiment_by_name("autopilot").experiment_id
    cycles = client.search_runs([experiment_id], f"tags.`{TAG_CYCLE}` != ''", max_results=1000)
    weeks, bootstrap = [], None
    for cycle in sorted(cycles, key=lambda r: int(r.data.tags[TAG_CYCLE])):
        steps = _outputs(client, experiment_id, cycle.info.run_id)
        if cycle.data.tags.get(TAG_TRIGGER) == "bootstrap":
            bootstrap = steps["retrain"]["version"]
            continue
        if cycle.data.tags.get(TAG_STATE) != "done":
            continue  # still running (read while the autopilot works)
        traffic, retrained = steps["traffic"], steps.get("retrain")
        asked = steps.get("label", {}).get("asked", 0)
        weeks.append({
            "week": int(cycle.data.tags[TAG_WEEK]), "mix": traffic["mix"], "champion": traffic["champion"],
            **{s: traffic.get(f"accuracy_{s}") for s in SLICES},
            "labels": asked, "label_share": asked / week_size, "trigger": steps["trigger"]["why"],
            "candidate": retrained["version"] if retrained else None,
            "verdict": retrained["verdict"] if retrained else "no trigger",
            "reason": (retrained["reasons"] or [""])[0] if retrained else "",
        })
    return weeks, bootstrap


def no_loop(url: str, version: str, args: argparse.Namespace) -> list[dict]:
    """The week-0 champion scoring every week's traffic (not logged): the arm without a loop."""
    import mlflow.pyfunc

    os.environ[LOG_ENV] = OFF
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    mlflow.set_tracking_uri(url)
    return scored_weeks(mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}"), args, version, 0, 0.0)


def scored_weeks(model, args: argparse.Namespace, champion: str, labels: int, share: float | None) -> list[dict]:
    """Every week's traffic scored by ``model`` (a loaded pyfunc, not logging), as ``read_weeks`` reports a week."""
    from projects.autopilot import simulate

    season = simulate.Season(args.weeks, args.week_size, args.shift_week, args.seed)
    weeks = []
    for week in range(args.weeks):
        scenes = season.scenes(week)
        found = simulate.week_metrics(scenes, simulate.predict(model, scenes))
        weeks.append({"week": week, "mix": season.mix(week).name, "champion": champion,
                      **{s: found.get(f"accuracy_{s}") for s in SLICES}, "labels": labels, "label_share": share})
    return weeks


def ceiling(args: argparse.Namespace, folder: Path) -> list[dict]:
    """The ceiling arm (module docstring): trained in this process on its own SQLite store."""
    import mlflow

    from projects.autopilot import simulate
    from projects.scenes import generate
    from projects.train import train
    from projects.train_config import Hyperparameters, TrainConfig, Tracking

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'ceiling.db'}")
    data = generate(args.train_size, simulate.RAINY_SEASON, seed=args.seed * 1000 + 7)  # no week's seed
    trained = train(data, TrainConfig(Hyperparameters(epochs=args.epochs, seed=args.seed), Tracking(registered_model="ceiling")))
    return scored_weeks(mlflow.pyfunc.load_model(f"models:/ceiling/{trained.version}"), args, "ceiling", len(data), None)


def goal(weeks: list[dict], shift: int) -> dict:
    """The issue's goal on one arm: the first week after the shift where rain is within 2 points of
    clear (and stays within for the rest), how many weeks that took, the largest label share."""
    after = [w for w in weeks if w["week"] >= shift and w["rain"] is not None and w["clear"] is not None]
    back = next((w["week"] for i, w in enumerate(after)
                 if all(x["clear"] - x["rain"] <= GOAL_POINTS for x in after[i:])), None)
    rain_after = [w["rain"] for w in after]
    return {"rain_back_in_week": back, "weeks_after_shift": None if back is None else back - shift,
            "met_within_3_weeks": back is not None and back - shift <= GOAL_WEEKS,
            "max_label_share": max((w["label_share"] or 0.0 for w in weeks), default=0.0),
            "mean_rain_after_shift": sum(rain_after) / len(rain_after) if rain_after else None,
            "mean_gap_after_shift": (sum(w["clear"] - w["rain"] for w in after) / len(after)) if after else None}


def gap_closed(weekly: dict[str, list[dict]], shift: int) -> dict[str, float | None]:
    """Per arm, the share of the no-loop arm's rain gap to the ceiling closed, over the weeks after
    the shift (0: no better than no loop, 1: as good as the ceiling)."""
    after = range(shift, len(weekly["none"]))
    gap = sum(weekly["ceiling"][w]["rain"] - weekly["none"][w]["rain"] for w in after)
    return {arm: (sum(weekly[arm][w]["rain"] - weekly["none"][w]["rain"] for w in after) / gap if gap > 0 else None)
            for arm in ("loop", "random")}


def chart(arms: dict[str, list[dict]], shift: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    styles = {"loop": ("tab:green", "-"), "random": ("tab:orange", "-"), "none": ("tab:gray", "--"),
              "ceiling": ("tab:purple", ":")}
    for name, weeks in arms.items():
        colour, line = styles[name]
        x = [w["week"] for w in weeks]
        left.plot(x, [w["rain"] for w in weeks], line, color=colour, marker="o", label=f"{name}: rain")
        right.plot(x, [w["green_cone"] for w in weeks], line, color=colour, marker="o", label=f"{name}: green cones")
    loop = arms["loop"]
    left.plot([w["week"] for w in loop], [w["clear"] for w in loop], ":", color="black", label="loop: clear")
    for axis, title in ((left, "rain vs clear"), (right, "green cones")):
        axis.axvline(shift - 0.5, color="tab:blue", alpha=0.3)
        axis.set_title(f"champion accuracy, {title}")
        axis.set_xlabel("simulated week (rainy season from the blue line)")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    left.set_ylabel("accuracy on the week's traffic")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = ResultFile("season-quick" if args.quick else "season", packages=("torch", "mlflow", "evidently"))
    folder = Path(tempfile.mkdtemp(prefix="bench-season-"))
    policy = policy_file(folder, args.quick)
    arms = {}
    for name, selection in (("loop", "reasons"), ("random", "random")):
        print(f"arm {name}: {args.weeks} weeks …", flush=True)
        arms[name] = run_arm(name, selection, args, folder / name, policy)
        print(f"arm {name}: {arms[name]['seconds']} s", flush=True)
    print("ceiling: training on the rainy season …", flush=True)
    weekly = {"loop": arms["loop"]["weeks"], "random": arms["random"]["weeks"], "none": arms["loop"]["no_loop"],
              "ceiling": ceiling(args, folder)}
    print(f"{'week':>4} {'arm':<7} " + " ".join(f"{s:>10}" for s in SLICES) + f" {'labels':>7}  verdict")
    for week in range(args.weeks):
        for name, weeks in weekly.items():
            w = weeks[week]
            cells = " ".join(f"{w[s]:>10.3f}" if w[s] is not None else f"{'-':>10}" for s in SLICES)
            print(f"{week:>4} {name:<7} {cells} {w['labels']:>7}  {w.get('verdict', '')} {w.get('reason', '')[:80]}")
    goals = {name: goal(weeks, args.shift_week) for name, weeks in weekly.items()}
    closed = gap_closed(weekly, args.shift_week)
    for name, found in goals.items():
        print(f"goal {name}: {found}")
    print(f"share of the rain gap between no loop and the ceiling closed after the shift: {closed}")
    chart(weekly, args.shift_week, CHART if not args.quick else folder / "season.png")
    for line in machine_lines(("torch", "mlflow", "evidently")):
        print(line)
    figures = {"parameters": {k: v for k, v in vars(args).items() if k != "keep"}, "policy": str(POLICY.relative_to(REPO)), "weeks": weekly, "goal": goals, "gap_closed": closed,
               "seconds": {name: arm["seconds"] for name, arm in arms.items()},
               "bootstrap_version": arms["loop"]["bootstrap_version"]}
    print(f"wrote {result.write(figures)}")
    if args.keep:
        print(f"arms kept under {folder}")
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

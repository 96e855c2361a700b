"""The autopilot's loop: a cycle per simulated week (or per wake-up, live), each step a run,
promotion only through the gate.

A cycle (``projects.autopilot.cycles``) is one week: ``traffic`` (the week's scenes scored by the
champion and logged — by ``mlflow models serve`` restarted on each new champion, or in this
process), ``trigger`` (drift of the week's logged window against the champion's
training data beyond the policy, at least ``min_new_labels`` labels given since the last retrain,
or ``schedule_weeks`` without one), and when a trigger fires ``mine`` → ``label`` (the simulated
labeller answers the queue through the gate) → ``curate`` (labelled rows into a new training-set
version; slice rows into the hard-case set) → ``retrain`` (train on it, then drift, evaluation on
the registered sets, verification and the gate's decision: ``projects.retrain.judge``). Without a
champion the first cycle is a bootstrap ``retrain`` on summer data.

Live (``simulate_weeks`` 0) a cycle starts every ``every_s`` seconds on the real log: ``window``
(its last ``window_days``), ``trigger`` (the same three, the schedule in real time), and when one
fires ``curate`` (the newest earlier queue, with the labels people gave on it since) →
``retrain`` (when that grew the training set) → ``mine`` (a new queue for people to label with
``gatekeeper feedback import``). People stand in for the simulated labeller, so a cycle never
waits for them: what they label between two cycles is used by the second. A queue is curated by
the first cycle after it (a label given later goes to no training set: mine puts such rows up
again only as high-loss rows). Live mode needs a champion: it watches a model in production.

Everything a restarted autopilot needs is in the runs: the week a cycle belongs to, the
training-set version the last curation made, the last retrain's week. The lease
(``projects.autopilot.lease``) makes a second instance wait, and is checked before every step.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projects.autopilot import simulate
from projects.autopilot.cycles import TAG_MODEL, TAG_OUTPUT, TAG_STEP, TAG_WEEK, Cycle, CycleBook
from projects.autopilot.lease import LeaseKeeper
from projects.autopilot.serving import ScoringServer
from projects.mine.run import CHAMPION_ALIAS
from registry_hooks.contract import STEP_ENV, TAG_VERDICT

EXPERIMENT = "autopilot"
LIVE = "live"  # the trigger tag of a live cycle ("bootstrap", "week N" in simulation)


@dataclass(frozen=True)
class PilotConfig:
    registered_model: str = "road-scenes"
    simulate_weeks: int = 8
    week_size: int = 2000
    shift_week: int = 2
    budget: float = 0.02
    selection: str = "reasons"  # "random": the control arm of benchmarks/bench_season.py
    serving: str = "serve"  # traffic through `mlflow models serve` (projects.autopilot.serving), or "in-process"
    min_new_labels: int = 50
    schedule_weeks: int = 4
    train_size: int = 8000
    eval_size: int = 3000
    epochs: int = 15
    min_support: int = 50
    label_delay_s: float = 0.0
    ttl_s: int = 60
    seed: int = 0
    data_dir: str = "data/autopilot"
    every_s: int = 3600  # live: seconds from one cycle's start to the next
    cycles: int = 0  # live: stop after this many cycles (0: until stopped)
    window_days: float = 7.0  # live: the window each cycle reads
    training_set: str = ""  # live: the version folder to grow, until a cycle has curated or trained one

    @property
    def live(self) -> bool:
        return self.simulate_weeks == 0

    def retrain_config(self):
        from projects.retrain import RetrainConfig

        return RetrainConfig(registered_model=self.registered_model, train_size=self.train_size,
                             eval_size=self.eval_size, window_size=self.week_size, epochs=self.epochs, seed=self.seed)


class Pilot:
    def __init__(self, config: PilotConfig, gate, client, experiment_id: str, parent_run_id: str | None, out=sys.stdout):
        self.config, self.gate, self.client, self.out = config, gate, client, out
        self.book = CycleBook(client, experiment_id, config.registered_model)
        self.parent_run_id = parent_run_id
        self.data = Path(config.data_dir)
        self.season = simulate.Season(config.simulate_weeks, config.week_size, config.shift_week, config.seed)
        self.lease: LeaseKeeper | None = None
        self.server = ScoringServer(config.registered_model, self.data / "serving", say=self.say)

    def say(self, text: str) -> None:
        print(f"autopilot: {text}", file=self.out, flush=True)

    # -- the loop ----------------------------------------------------------------------------------

    def fly(self) -> None:
        self._ensure_model()
        self.lease = LeaseKeeper(self.gate, self.config.registered_model, self.config.ttl_s, say=self.say)
        self.lease.acquire()
        try:
            reopened = self.book.reopen()
            if reopened is not None:
                self.say(f"resuming cycle {reopened.number} (done: {', '.join(reopened.done) or 'nothing'})")
                self._cycle(reopened)
            if self.config.live:
                self._watch()
                return
            if self._champion() is None:
                self._cycle(self.book.start(self.book.last_number() + 1, "bootstrap", self.parent_run_id))
            while (week := self._next_week()) < self.config.simulate_weeks:
                self._cycle(self.book.start(self.book.last_number() + 1, f"week {week}", self.parent_run_id))
        finally:
            self.server.stop()
            self.lease.release()

    def _watch(self) -> None:
        """Live: a cycle every ``every_s`` seconds (the lease renewed meanwhile), ``cycles`` of them."""
        import time

        if self._champion() is None:
            raise RuntimeError(f"live mode watches a model in production, and {self.config.registered_model} has no "
                               f"@{CHAMPION_ALIAS}: promote a first version (mlflow run . -e retrain)")
        done = 0
        while True:
            started = time.monotonic()
            self._cycle(self.book.start(self.book.last_number() + 1, LIVE, self.parent_run_id))
            done += 1
            if self.config.cycles and done >= self.config.cycles:
                return
            time.sleep(max(0.0, self.config.every_s - (time.monotonic() - started)))

    def _live_cycle(self, cycle: Cycle) -> None:
        seen = self._step(cycle, "window", lambda: self._live_window(cycle))
        verdict = "empty window"
        if seen["rows"]:
            fired = self._step(cycle, "trigger", lambda: self._trigger(seen, None))
            verdict = "no trigger"
            if fired["why"]:
                earlier = self._latest("mine")
                verdict = "no queue yet: mined one for people to label"
                if earlier is not None:
                    curated = self._step(cycle, "curate", lambda: self._curate(earlier))
                    verdict = "no new labels on the last queue"
                    if curated["changed"]:
                        verdict = self._step(cycle, "retrain", lambda: self._retrain(curated, fired, None))["verdict"]
                self._step(cycle, "mine", lambda: self._mine(seen, cycle.number))
        self.book.finish(cycle, {TAG_VERDICT: verdict})
        self.say(f"cycle {cycle.number} (live): {verdict}")

    def _cycle(self, cycle: Cycle) -> None:
        if cycle.trigger == LIVE:
            self._live_cycle(cycle)
            return
        if cycle.trigger == "bootstrap":
            outputs = self._step(cycle, "retrain", self._bootstrap)
            self.book.finish(cycle, {TAG_VERDICT: outputs["verdict"]})
            if self._champion() is None:
                raise RuntimeError(f"the bootstrap model was not promoted ({outputs['verdict']}): "
                                   f"{'; '.join(outputs['reasons'])}")
            return
        week = int(cycle.trigger.split()[-1])
        seen = self._step(cycle, "traffic", lambda: self._traffic(week))
        fired = self._step(cycle, "trigger", lambda: self._trigger(seen, week))
        verdict = "no trigger"
        if fired["why"]:
            queue = self._step(cycle, "mine", lambda: self._mine(seen, week))
            self._step(cycle, "label", lambda: self._label(queue))
            curated = self._step(cycle, "curate", lambda: self._curate(queue))
            verdict = self._step(cycle, "retrain", lambda: self._retrain(curated, fired, week))["verdict"]
        self.book.finish(cycle, {TAG_VERDICT: verdict, TAG_WEEK: str(week)})
        self.say(f"week {week}: {verdict}")

    def _ensure_model(self) -> None:
        """The lease is held on a registered model: create it when the autopilot starts from nothing."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(self.config.registered_model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _step(self, cycle: Cycle, name: str, work) -> dict[str, Any]:
        self.lease.ensure()
        os.environ[STEP_ENV] = f"autopilot-{name}"  # the run-context provider tags every run of the step
        try:
            return self.book.step(cycle, name, work)
        finally:
            os.environ.pop(STEP_ENV, None)

    def _next_week(self) -> int:
        """The first simulated week no finished cycle covered (cycles record their week)."""
        weeks = [int(r.data.tags[TAG_WEEK]) for r in self.book.cycles(f" AND tags.`{TAG_WEEK}` != ''")]
        return max(weeks, default=-1) + 1

    def _champion(self):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.config.registered_model, CHAMPION_ALIAS)
        except MlflowException:
            return None

    def _latest(self, step: str) -> dict[str, Any] | None:
        """The outputs of the newest finished ``step`` of any cycle of this model."""
        import json

        runs = self.client.search_runs(
            [self.book.experiment_id], f"tags.`{TAG_STEP}` = '{step}' AND tags.`{TAG_MODEL}` = "
            f"'{self.config.registered_model}' AND attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
            max_results=1)
        return json.loads(runs[0].data.tags[TAG_OUTPUT]) if runs and TAG_OUTPUT in runs[0].data.tags else None

    # -- the steps -----------------------------------------------------------------------------

    def _bootstrap(self) -> dict[str, Any]:
        from projects.retrain import retrain

        from projects.scenes import training_version

        result = retrain(self.config.retrain_config(), data_dir=str(self.data), out=self.out)
        train_dir, _ = training_version(self.data, "summer", self.config.train_size, self.config.seed)
        return {"version": result.version, "verdict": result.verdict, "reasons": result.reasons[:5],
                "training_set": str(train_dir), "finished": dt.datetime.now(dt.timezone.utc).isoformat()}

    def _traffic(self, week: int) -> dict[str, Any]:
        import mlflow

        champion = self._champion()
        if self.config.serving == "serve":  # (re)started on the champion: a promotion is rolled out here
            served_by, score = self.server.serve(champion.version), self.server.score
        else:
            served_by, score = "pyfunc", simulate.in_process(f"models:/{self.config.registered_model}/{champion.version}")
        seen = simulate.traffic(self.season, week, score, self.data / "answer-keys")
        mlflow.log_metrics({k: v for k, v in seen.items() if k.startswith("accuracy_")})
        return seen | {"champion": champion.version, "name": f"week-{week:03d}",
                       "served_by": served_by}

    def _live_window(self, cycle: Cycle) -> dict[str, Any]:
        """The log's last ``window_days`` up to now, as the champion now serving it."""
        from registry_hooks.inference_records import REQUEST_ID, read_window

        end = dt.datetime.now(dt.timezone.utc)
        start = end - dt.timedelta(days=self.config.window_days)
        rows = read_window(start, end, columns=[REQUEST_ID]).num_rows
        return {"start": start.isoformat(), "end": end.isoformat(), "rows": rows, "champion": self._champion().version,
                "name": f"live-{cycle.number:05d}"}

    def _window(self, seen: dict[str, Any]) -> Path:
        """The cycle's logged window as a table drift and the judge read: ``windows/<name>/data.parquet``
        (``week-NNN`` simulated, ``live-NNNNN`` live)."""
        from projects.retrain import DRIFT_COLUMNS
        from projects.scenes import DATA_FILE
        from registry_hooks.inference_records import read_window

        folder = self.data / "windows" / seen["name"]
        folder.mkdir(parents=True, exist_ok=True)
        table = read_window(dt.datetime.fromisoformat(seen["start"]), dt.datetime.fromisoformat(seen["end"]),
                            columns=DRIFT_COLUMNS).to_pandas()
        table.to_parquet(folder / DATA_FILE, index=False)
        return folder

    def _trigger(self, seen: dict[str, Any], week: int | None) -> dict[str, Any]:
        """Which triggers fire on the cycle's window; ``week`` None: live, the schedule in real time."""
        from projects import drift
        from projects.retrain import DRIFT_COLUMNS
        from projects.scenes import DATA_FILE

        why = []
        window = self._window(seen)
        drifted = drift.run_drift(f"models:/{self.config.registered_model}/{seen['champion']}",
                                  str(window / DATA_FILE), columns=DRIFT_COLUMNS)
        critical = set(self.gate.policy(self.config.registered_model)["policy"]["drift"]["critical_columns"])
        if drifted.summary.dataset_drift or critical & set(drifted.summary.drifted_columns):
            why.append(f"drift: {', '.join(drifted.summary.drifted_columns) or 'the data set'} (run {drifted.run_id})")
        last = self._latest("retrain")
        since = dt.datetime.fromisoformat(last["finished"]) if last and "finished" in last else None
        labels = len(self.gate.feedback(self.config.registered_model, created_since=since)) if since else 0
        if labels >= self.config.min_new_labels:
            why.append(f"{labels} new labels")
        if week is not None:
            elapsed = week - (last["week"] if last and last.get("week") is not None else -1)
        else:
            elapsed = (dt.datetime.now(dt.timezone.utc) - since).total_seconds() / (7 * 86400) if since else float("inf")
        if elapsed >= self.config.schedule_weeks:
            why.append(f"schedule: {elapsed:g} weeks since the last retrain")
        return {"why": why, "window": str(window), "drift_run": drifted.run_id}

    def _mine(self, seen: dict[str, Any], seed: int) -> dict[str, Any]:
        from projects.mine.run import MineRequest, mine
        from projects.mine.slices import SliceOptions

        request = MineRequest(
            registered_model=self.config.registered_model, end=dt.datetime.fromisoformat(seen["end"]),
            window_days=(dt.datetime.fromisoformat(seen["end"]) - dt.datetime.fromisoformat(seen["start"])).total_seconds() / 86400,
            fraction=self.config.budget, candidate="none", feedback="", log="", out=self.data / "queues",
            seed=self.config.seed + seed, options=SliceOptions(min_support=self.config.min_support),
            selection=self.config.selection)
        outcome = mine(request)
        return {"queue": str(outcome.folder), "rows": len(outcome.mined.queue), "run_id": outcome.run_id}

    def _label(self, queue: dict[str, Any]) -> dict[str, Any]:
        import pandas as pd

        rows = pd.read_parquet(Path(queue["queue"]) / "queue.parquet", columns=["request_id"])
        return simulate.answer(self.gate, self.config.registered_model, rows, self.data / "answer-keys",
                               self.config.label_delay_s)

    def _curate(self, queue: dict[str, Any]) -> dict[str, Any]:
        from projects.curate.run import CurateRequest, curate

        base = (self._latest("curate") or self._latest("retrain") or {}).get("training_set") or self.config.training_set
        if not base:
            raise RuntimeError("no training set to grow: no cycle has curated or trained one yet; name the champion's "
                               "training-set version folder with --training-set")
        outcome = curate(CurateRequest(queue=Path(queue["queue"]), base=Path(base), registered_model=self.config.registered_model,
                                       feedback="", out=self.data / "train", hard_cases="hard-cases", min_labels=1))
        hard = outcome.hard_cases
        return {"training_set": str(outcome.path), "changed": outcome.changed, "rows": outcome.manifest.get("n"),
                "hard_cases": hard.registered.get("version") if hard else None, "run_id": outcome.run_id}

    def _retrain(self, curated: dict[str, Any], fired: dict[str, Any], week: int | None) -> dict[str, Any]:
        from projects.retrain import CycleResult, evaluation_version, judge, tune_and_train

        import mlflow

        config = self.config.retrain_config()
        train_dir = Path(curated["training_set"])
        result = CycleResult(mlflow.active_run().info.run_id)
        tune_and_train(config, train_dir, train_dir.name, result)
        judge(config, self.gate, result, evaluation_version(self.data, self.config.eval_size), Path(fired["window"]),
              register_window=False, out=self.out)
        return {"version": result.version, "verdict": result.verdict, "reasons": result.reasons[:5],
                "training_set": str(train_dir), "week": week, "finished": dt.datetime.now(dt.timezone.utc).isoformat()}

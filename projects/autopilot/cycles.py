"""The autopilot's record of its cycles: MLflow runs, one parent per cycle, one child per step.

Why runs and not a table of their own (docs/design/operation-vacation.md, section 6, departs
here): a step's run *is* the durable fact that the step finished — MLflow commits its status when
the step ends — and it is what a person watches in the UI. So a cycle is a parent run tagged with
the model, its number, its trigger and its state; a step is a child run tagged with its name, and
it counts as done only when it is FINISHED and carries its outputs (a JSON tag written just
before it ends). Killed at any point, a restarted autopilot reopens the model's running cycle,
marks the step run that died with it KILLED, skips every finished step (reading its outputs) and
redoes the rest from the first unfinished one. The gate step may therefore run twice for one
candidate; the gate's promote is idempotent ("already holds every target: nothing changed"), so
production never moves twice and no step can skip the gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

TAG_MODEL = "gatekeeper.autopilot.model"
TAG_CYCLE = "gatekeeper.autopilot.cycle"
TAG_STATE = "gatekeeper.autopilot.state"  # running | done
TAG_TRIGGER = "gatekeeper.autopilot.trigger"
TAG_STEP = "gatekeeper.autopilot.step"
TAG_OUTPUT = "gatekeeper.autopilot.output"  # a finished step's outputs, JSON
TAG_WEEK = "gatekeeper.autopilot.week"  # the simulated week a finished cycle covered
RUNNING, DONE = "running", "done"
_MAX_TAG = 8000  # MLflow's limit on a tag value


@dataclass
class Cycle:
    run_id: str
    number: int
    trigger: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> its outputs


class CycleBook:
    """The cycles of one model in one experiment."""

    def __init__(self, client, experiment_id: str, model: str):
        self.client, self.experiment_id, self.model = client, experiment_id, model

    def cycles(self, extra: str = "") -> list:
        """The model's cycle runs (``extra``: more of a search filter, starting with `` AND``)."""
        query = f"tags.`{TAG_MODEL}` = '{self.model}' AND tags.`{TAG_CYCLE}` != ''" + extra
        return self.client.search_runs([self.experiment_id], query, max_results=1000)

    def last_number(self) -> int:
        return max((int(r.data.tags[TAG_CYCLE]) for r in self.cycles()), default=0)

    def reopen(self) -> Cycle | None:
        """The model's unfinished cycle, with its finished steps; the steps that died marked KILLED."""
        open_ = [r for r in self.cycles(f" AND tags.`{TAG_STATE}` = '{RUNNING}'")]
        if not open_:
            return None
        run = max(open_, key=lambda r: int(r.data.tags[TAG_CYCLE]))
        cycle = Cycle(run.info.run_id, int(run.data.tags[TAG_CYCLE]), run.data.tags.get(TAG_TRIGGER, ""))
        steps = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                                        max_results=1000, order_by=["attributes.start_time ASC"])
        for step in steps:
            name = step.data.tags.get(TAG_STEP)
            if step.info.status == "FINISHED" and TAG_OUTPUT in step.data.tags:
                cycle.done[name] = json.loads(step.data.tags[TAG_OUTPUT])
            elif step.info.status == "RUNNING":
                self.client.set_terminated(step.info.run_id, "KILLED")  # its process is gone: we hold the lease
        return cycle

    def start(self, number: int, trigger: str, parent_run_id: str | None = None) -> Cycle:
        """A new cycle's run (a child of ``parent_run_id``: the project's run under ``mlflow run``)."""
        tags = {TAG_MODEL: self.model, TAG_CYCLE: str(number), TAG_STATE: RUNNING, TAG_TRIGGER: trigger}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=f"autopilot cycle {number}", tags=tags)
        return Cycle(run.info.run_id, number, trigger)

    def step(self, cycle: Cycle, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``work`` as the step ``name`` of ``cycle`` (a child run, active while it works, so
        the jobs it calls nest under it), unless the cycle already finished that step."""
        import mlflow

        if name in cycle.done:
            return cycle.done[name]
        with mlflow.start_run(run_name=name, parent_run_id=cycle.run_id, experiment_id=self.experiment_id,
                              tags={TAG_STEP: name, TAG_MODEL: self.model}):
            outputs = work()
            text = json.dumps(outputs, default=str, sort_keys=True)
            if len(text) > _MAX_TAG:
                raise ValueError(f"step {name} returned {len(text)} characters of outputs; at most {_MAX_TAG}")
            mlflow.set_tag(TAG_OUTPUT, text)
        cycle.done[name] = json.loads(text)
        return cycle.done[name]

    def finish(self, cycle: Cycle, tags: dict[str, str] | None = None) -> None:
        for key, value in {TAG_STATE: DONE, **(tags or {})}.items():
            self.client.set_tag(cycle.run_id, key, value)
        self.client.set_terminated(cycle.run_id, "FINISHED")

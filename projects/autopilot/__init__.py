"""The autopilot: the loop of issue 11 with no human command (docs/design/operation-vacation.md, section 6).

* ``lease``    -- waiting for, keeping and noticing the loss of the model's lease on the gated server.
* ``cycles``   -- the cycle record: a parent run per cycle, a child run per step, resumed after a kill.
* ``simulate`` -- the reference task's season: weekly traffic scored by the champion, a labeller.
* ``pilot``    -- the loop: traffic → trigger → mine → label → curate → retrain and the gate.
* ``python -m projects.autopilot --help`` (``mlflow run . -e autopilot``) -- the entry point.
"""

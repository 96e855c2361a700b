"""``/gatekeeper/api/autopilot/lease``: the autopilot's lease on a model, over REST.

The autopilot (``projects/autopilot``) needs nothing but the tracking URI, like every other job, so
its lease lives behind the gated server rather than in a database URI it would have to be given.
``POST`` takes ``{"name", "holder", "action": acquire|renew|release, "ttl_s", "generation"}`` and
answers the lease's state (``held``: whether the asker holds it); losing a race is an answer
(``held`` false, who holds it until when), not an error. ``GET ?name=`` shows who holds it.

What an attacker with edit rights on the model can do here: take the lease and make the model's
autopilot wait. Nothing else: the lease moves no version and hides no decision (promotion goes
through the gate, whoever asks). Writing needs EDIT on the model, as promoting does; reading, READ.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from plugins.params import invalid_parameter, parse_int, parse_name, parse_text
from registry_hooks import autopilot_lease
from registry_hooks.transactions import retrying

_ACTIONS = ("acquire", "renew", "release")
_FIELDS = {"name", "holder", "action", "ttl_s", "generation"}


def _now() -> int:
    return int(time.time() * 1000)


def change(params: dict[str, Any], store) -> dict[str, Any]:
    unknown = sorted(set(params) - _FIELDS)
    if unknown:
        raise invalid_parameter(f"unknown field(s) {', '.join(unknown)}; this route takes {', '.join(sorted(_FIELDS))}")
    name = store.get_registered_model(parse_name(params.get("name"))).name  # unknown model: 404
    holder = parse_text(params.get("holder"), "holder", required=True, max_chars=autopilot_lease.MAX_HOLDER_CHARS)
    action = params.get("action")
    if action not in _ACTIONS:
        raise invalid_parameter(f"Parameter 'action' must be one of {', '.join(_ACTIONS)}, got {action!r}.")
    ttl_ms = 1000 * (parse_int(params.get("ttl_s"), "ttl_s", 1, autopilot_lease.MAX_TTL_S) if action != "release" else 0)
    generation = None if action == "acquire" else parse_int(params.get("generation"), "generation", 1, 2**31 - 1)

    def once() -> autopilot_lease.LeaseState:
        with Session(store.engine) as session, session.begin():
            if action == "acquire":
                return autopilot_lease.acquire(session, name, holder, ttl_ms, _now())
            if action == "renew":
                return autopilot_lease.renew(session, name, holder, generation, ttl_ms, _now())
            return autopilot_lease.release(session, name, holder, generation, _now())

    return {"lease": retrying(once).to_dict()}


def look(params: dict[str, Any], store) -> dict[str, Any]:
    name = store.get_registered_model(parse_name(params.get("name"))).name
    with Session(store.engine) as session:
        return {"lease": autopilot_lease.look(session, name, _now()).to_dict()}

"""The gate's line in a version's description: one click from MLflow's UI to the decision page.

MLflow's UI shows a version's tags as plain text (``gatekeeper.decision_url`` cannot be clicked),
but it renders a version's description as Markdown at the top of the version page, and shows its
first words in the model's table of versions. So the gate keeps one line there, first, naming the
latest decision about the version with its verdict in words and a link to every check::

    **Gatekeeper decision #12: ✗ refused: worse** · [every check with its numbers](/gatekeeper/decision?id=12)

The line belongs to the gate; the rest of the description stays the user's. A line of the user's
that imitates it (in any spelling: NFKC, case, spacing, Markdown emphasis, look-alike letters) is
dropped whenever a description is written, and the true line rebuilt from the version's reserved
tags, which only the gate writes — so editing a description can neither forge a decision's line
nor hide it. A copied version (``copy_model_version``) loses the line with its source's tags.
"""

from __future__ import annotations

import re

from registry_hooks import names
from registry_hooks.contract import DECISION_PAGE

DESCRIPTION_LIMIT = 5000  # MLflow's model_versions.description column: String(5000)
_MARKUP = re.compile(r"[\s*_~`>#|\[\]()!:.\-]+")  # Markdown that may dress an imitation up
_MARK = "gatekeeper decision"
VERDICT_WORDS = {  # icon and words beside each colour on the pages: the colour is never the only signal
    "promote": ("✓", "approved"),
    "refuse_worse": ("✗", "refused: worse"),
    "refuse_insufficient_evidence": ("?", "refused: not enough evidence"),
    "rollback": ("↩", "rolled back"),
}
_MOVED_ANYWAY = {"override": "overridden by an admin", "rollback": "production rolled back to it"}


def verdict_label(verdict: str | None) -> tuple[str, str]:
    """(icon, words) for a verdict; an unknown one is shown as it is stored."""
    return VERDICT_WORDS.get(verdict or "", ("•", verdict or "none"))


def decision_url(decision_id: int | str) -> str:
    """The decision's page on this server (``plugins.pages``), as the UI, the tags and refusals name it."""
    return f"{DECISION_PAGE}?id={decision_id}"


def line(decision_id: int | str, verdict: str, action: str) -> str:
    """The gate's line for a decision: its number, the verdict in words, what was done, the link."""
    icon, words = verdict_label(verdict)
    moved = f" ({_MOVED_ANYWAY[action]})" if action in _MOVED_ANYWAY and verdict != action else ""
    return f"**Gatekeeper decision #{decision_id}: {icon} {words}**{moved} · [every check with its numbers]({decision_url(decision_id)})"


def _imitates(text: str) -> bool:
    bare = _MARKUP.sub("", text)
    return (names.normalise(bare).startswith(names.normalise(_MARK))
            or names.skeleton(bare).startswith(names.skeleton(_MARK)))


def without_line(description: str | None) -> str | None:
    """The description with every line that is, or imitates, the gate's line removed."""
    if not description:
        return description
    kept = [text for text in description.splitlines() if not _imitates(text)]
    return "\n".join(kept).strip("\n") or None


def with_line(description: str | None, decision: tuple[int | str, str, str] | None) -> str | None:
    """The user's description under the gate's line for ``decision`` (id, verdict, action), within
    MLflow's column limit (the user's text is shortened, never the line); None keeps no line."""
    own = without_line(description)
    if decision is None:
        return own
    first = line(*decision)
    if not own:
        return first
    room = DESCRIPTION_LIMIT - len(first) - 2
    if len(own) > room:
        own = own[: room - 1] + "…"
    return f"{first}\n\n{own}"

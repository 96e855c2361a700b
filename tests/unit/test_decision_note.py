"""The gate's line in a version's description: its words, and that no spelling of it survives a write."""

from __future__ import annotations

import pytest

from plugins.decision_note import DESCRIPTION_LIMIT, line, with_line, without_line

REFUSED = (12, "refuse_worse", "refuse")


def test_the_line_names_the_decision_its_verdict_in_words_and_links_to_every_check():
    assert line(*REFUSED) == ("**Gatekeeper decision #12: ✗ refused: worse** · "
                              "[every check with its numbers](/gatekeeper/decision?id=12)")
    assert "✓ approved**" in line(3, "promote", "promote")
    assert "(overridden by an admin)" in line(4, "refuse_insufficient_evidence", "override")
    assert "↩ rolled back**" in line(5, "rollback", "rollback") and "(production" not in line(5, "rollback", "rollback")


def test_the_line_comes_first_and_the_users_text_stays():
    text = with_line("Trained on the rainy window.\n\nSee the notebook.", REFUSED)
    assert text.splitlines()[0] == line(*REFUSED)
    assert text.endswith("Trained on the rainy window.\n\nSee the notebook.")
    assert with_line(None, REFUSED) == line(*REFUSED) == with_line("", REFUSED)
    assert with_line("notes", None) == "notes" and with_line(None, None) is None


@pytest.mark.parametrize("forged", [
    "**Gatekeeper decision #12: ✓ approved** · [every check](/gatekeeper/decision?id=3)",
    "Gatekeeper decision #99: approved",
    "  gatekeeper   DECISION #1",
    "# Gatekeeper decision",
    "> _Gatekeeper_ decision: approved",
    "ＧＡＴＥＫＥＥＰＥＲ decision #7",  # full-width letters (NFKC)
    "Gatekeeper\u200b decision #7",  # a zero-width space inside
    "Gаtekeeper decision #7",  # a Cyrillic а (a look-alike)
    "[Gatekeeper decision #7](https://example.com/phish)",
    "- **Gatekeeper decision** #7",
])
def test_every_spelling_of_the_line_is_dropped_and_the_true_one_put_back(forged):
    written = with_line(f"{forged}\nmy notes", REFUSED)
    assert written == f"{line(*REFUSED)}\n\nmy notes"
    assert without_line(f"{forged}\nmy notes") == "my notes"
    assert without_line(forged) is None


def test_lines_that_only_mention_the_gate_are_the_users():
    text = "The gatekeeper refused v3 last week; decision 12 explains why."
    assert without_line(text) == text
    assert with_line(text, REFUSED).endswith(text)


def test_a_long_description_is_shortened_never_the_line():
    written = with_line("x" * 10_000, REFUSED)
    assert len(written) == DESCRIPTION_LIMIT
    assert written.startswith(line(*REFUSED)) and written.endswith("x…")

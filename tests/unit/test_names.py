"""Tests for registry_hooks.names: normalisation and the UTS #39 confusables skeleton."""

from __future__ import annotations

import pytest

from registry_hooks.names import describe, imitates, normalise, same_alias, skeleton
from registry_hooks.policy import Targets

LOOK_ALIKES = {
    "ch\u0430mpion": "U+0430 CYRILLIC SMALL LETTER A",
    "\uff43\uff48\uff41\uff4d\uff50\uff49\uff4f\uff4e": "FULLWIDTH LATIN SMALL LETTER C",
    "champ\u0131on": "U+0131 LATIN SMALL LETTER DOTLESS I",
    "charnpion": "ASCII look-alikes",  # rn reads as m
    "champi0n": "ASCII look-alikes",
}


@pytest.mark.parametrize("alias", list(LOOK_ALIKES))
def test_look_alikes_of_champion_imitate_it_and_are_named(alias):
    assert imitates(alias, "champion")
    assert Targets(aliases=("champion",)).imitated_alias(alias) == "champion"
    assert LOOK_ALIKES[alias] in describe(alias)


def test_the_kelvin_sign_is_a_look_alike_not_the_same_alias():
    kelvin = "\u212api-prod"
    assert "\u212a".lower() == "k"  # why same_alias must not use str.lower
    assert not same_alias(kelvin, "kpi-prod") and imitates(kelvin, "kpi-prod")
    targets = Targets(aliases=("kpi-prod",))
    assert targets.canonical_alias(kelvin) is None and targets.imitated_alias(kelvin) == "kpi-prod"


@pytest.mark.parametrize("alias", ["champion", "CHAMPION", "Champion"])
def test_case_variants_are_the_alias_itself(alias):
    assert same_alias(alias, "champion") and not imitates(alias, "champion")
    assert Targets(aliases=("champion",)).canonical_alias(alias) == "champion"


@pytest.mark.parametrize("alias", ["challenger", "champion2", "champions", "chimp", "staging", ""])
def test_different_names_are_not_imitations(alias):
    assert not imitates(alias, "champion")


def test_normalise_folds_width_case_space_and_invisible_characters():
    assert normalise(" \uff27atekeeper.\u200bVerdict\t") == "gatekeeper.verdict"
    assert normalise("Stra\u00dfe") == "strasse"


def test_skeleton_is_idempotent_and_maps_mixed_scripts_together():
    for text in ["paypal", "p\u0430yp\u0430l", "g\u0430tekeeper.verdict", "\u0131nfo"]:
        assert skeleton(skeleton(text)) == skeleton(text)
    assert skeleton("p\u0430yp\u0430l") == skeleton("paypal")
    assert skeleton("g\u0430tekeeper.") == skeleton("gatekeeper.")

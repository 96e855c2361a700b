"""Names compared the way a person reads them, not the way a database stores them.

The registry stores names and keys byte for byte, so ``" gatekeeper.verdict"``, ``"ｇａｔｅｋｅｅｐｅｒ.x"``
and ``"chаmpion"`` (Cyrillic ``а``) are all distinct from what they imitate, yet the web UI shows
them identically. Everything the gate protects is compared through this module:

- ``normalise``: NFKC, case folding, whitespace and invisible format characters removed — two
  names a person would type or read as the same text compare equal;
- ``skeleton``: the Unicode confusables skeleton (UTS #39, section 4) on top of ``normalise`` —
  two names that merely *look* alike (Cyrillic ``а`` and Latin ``a``, ``rn`` and ``m``, dotless
  ``ı`` and ``i``, the Kelvin sign and ``K``, ``0`` and ``O``) get the same skeleton.

The confusables data is Unicode's ``confusables.txt`` as shipped by the ``confusable-homoglyphs``
package (it stores each ``source → prototype`` line in both directions; ``_prototypes`` recovers
the direction). A package keeps the data current with Unicode releases; this module only reads it.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from importlib.resources import files

_BIDI_MARKS = str.maketrans("", "", "\u200e\u200f")  # the data wraps right-to-left characters in these
VERSIONS = (1, 2**31 - 1)  # MLflow numbers versions from 1; its version column is an INTEGER (int4 on PostgreSQL)
_ASCII_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): it also takes "²", "١" and "１"


def normalise(text: str) -> str:
    """NFKC, case-folded, without whitespace or invisible format characters (zero-width etc.)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if not ch.isspace() and unicodedata.category(ch) != "Cf")


@functools.lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Each confusable source character → its prototype (one character or a short string).

    In ``confusables.txt`` a prototype never is a source, and every source has exactly one
    prototype; so a character listed with a single partner that is itself listed with several
    (or is a multi-character string) is a source. When both sides list only each other, either
    may be the prototype: both map to the smaller one, which keeps the two equal, and that is
    all a skeleton comparison needs.
    """
    raw = json.loads(files("confusable_homoglyphs").joinpath("confusables.json").read_text(encoding="utf-8"))
    partners = {
        key.translate(_BIDI_MARKS): [entry["c"].translate(_BIDI_MARKS) for entry in entries]
        for key, entries in raw.items()
    }
    mapping: dict[str, str] = {}
    for char, chars_partners in partners.items():
        if len(char) != 1 or len(chars_partners) != 1:
            continue  # a prototype (several sources map to it) or a multi-character prototype
        partner = chars_partners[0]
        if len(partner) == 1 and len(partners.get(partner, ())) == 1:
            mapping[char] = min(char, partner)
        else:
            mapping[char] = partner
    return mapping


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of ``normalise(text)``, case-folded again after the mapping."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", normalise(text))
    mapped = "".join(prototypes.get(ch, ch) for ch in decomposed)
    return unicodedata.normalize("NFD", mapped.casefold())


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def same_alias(alias: str, protected: str) -> bool:
    """The same alias up to ASCII case (``CHAMPION`` is ``champion``), as the web UI lowercases.

    Only ASCII letters fold: ``str.lower`` would also turn the Kelvin sign into ``k``, silently
    accepting a look-alike as the real alias instead of refusing it by name.
    """
    return alias.translate(_ASCII_LOWER) == protected.translate(_ASCII_LOWER)


def imitates(name: str, protected: str) -> bool:
    """True when ``name`` looks like ``protected`` without being the same alias."""
    return not same_alias(name, protected) and skeleton(name) == skeleton(protected)


def describe(text: str) -> str:
    """The non-ASCII characters of ``text`` by code point and name, for a message a person can act on."""
    odd = dict.fromkeys(ch for ch in text if not ch.isascii())
    return ", ".join(f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}" for ch in odd) or "ASCII look-alikes"


def version_number(text: str) -> int | None:
    """A model version as the registry numbers them (ASCII digits, in ``VERSIONS``), else None.

    ``int()`` also reads ``"١"``, ``" 1"`` and ``"+1"``: the gate must compare the very version
    MLflow will act on, so anything but plain digits is not a version.
    """
    if not _ASCII_DIGITS.fullmatch(text) or len(text.lstrip("0")) > len(str(VERSIONS[1])):
        return None
    number = int(text)
    return number if VERSIONS[0] <= number <= VERSIONS[1] else None

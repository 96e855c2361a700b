"""``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``: the one reading of a job's ``model`` argument.

``evaluate`` and ``drift`` both take a registered model version by URI; one parser keeps them from
accepting different spellings of the same thing. Versions follow the registry's own rule
(``registry_hooks.names.version_number``: ASCII digits, 1..2^31-1), so ``models:/m/١`` or
``models:/m/0`` is refused here rather than looked up as something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry_hooks.names import version_number

# MLflow refuses '/' and ':' in model names; aliases are word characters and '-'.
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/:@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[\w\-]+))/?$")


@dataclass(frozen=True)
class ModelUri:
    """A registered model version, by number or by alias (exactly one of the two is set)."""

    name: str
    version: str | None = None
    alias: str | None = None


def parse_model_uri(uri: str, *, alias: bool = True) -> ModelUri:
    """Parse ``uri``; ``alias=False`` for a job that must name one fixed version.

    Raises ``ValueError`` whose message reads after the argument's name: "must look like ...".
    """
    match = _MODEL_URI.match(uri or "")
    number = version_number(match["version"]) if match and match["version"] is not None else None
    if not match or (match["version"] is not None and number is None) or (match["alias"] and not alias):
        shapes = "models:/NAME/VERSION" + (" or models:/NAME@ALIAS" if alias else "")
        raise ValueError(f"must look like {shapes} (VERSION a number from 1), got {uri!r}")
    return ModelUri(match["name"], None if number is None else str(number), match["alias"])

"""The server-held promotion policy: what is protected, what counts as better, what evidence is fresh.

The policy is declarative data in the spirit of TFMA's ``MetricThreshold`` / ``SlicingSpec``:
thresholds and slices are values, not code. It lives on the server (a YAML or TOML file named by
``GATEKEEPER_POLICY``), is validated once at start-up, and its content hash is written into every
audit record so a decision can always be traced to the exact rules it was made under. Nothing a
client sends can change it.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from registry_hooks import names
from registry_hooks.sufficiency import BOOTSTRAP_RESOLUTION, FLOORS

POLICY_ENV_VAR = "GATEKEEPER_POLICY"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PolicyError(ValueError):
    """The policy file is unusable; the message names the offending key and what is allowed."""


@dataclass(frozen=True)
class Targets:
    """Which registry targets count as production and are therefore gated."""

    stages: tuple[str, ...] = ("Production",)
    aliases: tuple[str, ...] = ("champion",)

    def protects_stage(self, stage: str) -> bool:
        return stage.lower() in {s.lower() for s in self.stages}

    def canonical_alias(self, alias: str) -> str | None:
        """The policy's spelling of ``alias`` if it is protected (ASCII case-insensitive), else None."""
        for protected in self.aliases:
            if names.same_alias(alias, protected):
                return protected
        return None

    def imitated_alias(self, alias: str) -> str | None:
        """The protected alias that ``alias`` looks like without being it (UTS #39 skeleton), else None."""
        return next((protected for protected in self.aliases if names.imitates(alias, protected)), None)


@dataclass(frozen=True)
class PromoteTo:
    """What an approved ``gatekeeper promote`` (or ``retrain``) moves to the candidate."""

    alias: str | None = "champion"
    stage: str | None = "Production"


@dataclass(frozen=True)
class MetricThreshold:
    """One metric and how the candidate must compare with the baseline on it.

    ``margin``: the primary metric must improve by at least this much (in the metric's own
    units, oriented so that positive means better). ``tolerance``: a secondary metric or slice
    may be worse by at most this much.
    """

    metric: str
    margin: float = 0.0
    tolerance: float = 0.0


@dataclass(frozen=True)
class AbsoluteThreshold:
    """A first-release floor or ceiling on a metric, used when there is no baseline at all."""

    metric: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class SliceSpec:
    """Named slice columns, each value of which must not regress beyond ``tolerance``.

    ``mode``: ``detect`` refuses a slice shown worse than the tolerance; ``prove`` requires every
    slice to be shown within it. Both are Bonferroni-corrected for the number of slices tested.
    ``untestable``: what a slice does where its metric is undefined or degenerate (a single
    class for f1, precision, recall, roc_auc): ``block`` (refuse as not enough evidence) or
    ``skip``. Slices below ``min_size`` rows are skipped either way.
    """

    columns: tuple[str, ...] = ()
    metric: str | None = None  # None: the primary metric
    tolerance: float = 0.02
    min_size: int = 30
    mode: str = "detect"
    untestable: str = "block"


@dataclass(frozen=True)
class EvidenceRules:
    """Freshness, resampling, the label set, and the minimum evidence for any comparison
    (see ``registry_hooks.sufficiency``; the policy may raise the minimums, never lower them
    below ``sufficiency.FLOORS``)."""

    max_age_seconds: float = 7 * 86400
    bootstrap_resamples: int = 1000
    positive_label: str | int | None = None
    classes: tuple[str | int, ...] | None = None  # None: the labels present in the evaluation set
    min_rows: int = 30
    min_discordant: int = 10
    min_per_class: int = 10


@dataclass(frozen=True)
class DriftRules:
    required: bool = False
    max_share_drifted: float = 0.3
    critical_columns: tuple[str, ...] = ()
    max_age_seconds: float = 7 * 86400
    mode: str = "block"  # or "warn"


@dataclass(frozen=True)
class ModelPolicy:
    """The effective rules for one registered model (defaults merged with the matching override)."""

    targets: Targets = field(default_factory=Targets)
    promote_to: PromoteTo = field(default_factory=PromoteTo)
    primary: MetricThreshold = field(default_factory=lambda: MetricThreshold("accuracy"))
    confidence: float = 0.95
    secondary: tuple[MetricThreshold, ...] = ()
    slices: SliceSpec = field(default_factory=SliceSpec)
    first_release: tuple[AbsoluteThreshold, ...] = ()
    evidence: EvidenceRules = field(default_factory=EvidenceRules)
    drift: DriftRules = field(default_factory=DriftRules)
    allow_overrides: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_POLICY: dict[str, Any] = {
    "targets": {"stages": ["Production"], "aliases": ["champion"]},
    "promote_to": {"alias": "champion", "stage": "Production"},
    "primary": {"metric": "accuracy", "margin": 0.0},
    "confidence": 0.95,
    "secondary": [],
    "slices": {"columns": [], "metric": None, "tolerance": 0.02, "min_size": 30, "mode": "detect",
               "untestable": "block"},
    "first_release": [],
    "evidence": {"max_age": "7d", "bootstrap_resamples": 1000, "positive_label": None, "classes": None,
                 "min_rows": 30, "min_discordant": 10, "min_per_class": 10},
    "drift": {
        "required": False,
        "max_share_drifted": 0.3,
        "critical_columns": [],
        "max_age": "7d",
        "mode": "block",
    },
    "overrides": {"allowed": True},
}


def parse_duration(value: Any, key: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"`` or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise PolicyError(f"{key}: expected a duration like '7d' or '12h', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
    else:
        raise PolicyError(f"{key}: expected a duration like '7d', '12h', '30m' or '90s', got {value!r}")
    if seconds <= 0:
        raise PolicyError(f"{key}: must be positive, got {value!r}")
    return seconds


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _Reader:
    """Typed access to one mapping of the policy, with errors that name the full key path."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise PolicyError(f"{path}: expected a mapping, got {type(data).__name__}")
        self.data, self.path = data, path

    def check_keys(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise PolicyError(
                f"{self.path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )

    def child(self, key: str) -> _Reader:
        return _Reader(self.data.get(key, {}), f"{self.path}.{key}")

    def number(self, key: str, lo: float, hi: float, *, integer: bool = False) -> float:
        value = self.data.get(key)
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
            kind = "an integer" if integer else "a number"
            raise PolicyError(f"{self.path}.{key}: expected {kind} in [{lo}, {hi}], got {value!r}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise PolicyError(f"{self.path}.{key}: expected true or false, got {value!r}")
        return value

    def names(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise PolicyError(f"{self.path}.{key}: expected a list of non-empty names, got {value!r}")
        return tuple(value)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.data.get(key)
        if value not in allowed:
            raise PolicyError(f"{self.path}.{key}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value

    def optional_name(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise PolicyError(f"{self.path}.{key}: expected a name or null, got {value!r}")
        return value


def _is_label(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _classes(value: Any, positive_label: Any, path: str) -> tuple[str | int, ...] | None:
    """The declared label set: at least two distinct labels, holding the positive one."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) < 2 or not all(_is_label(v) for v in value):
        raise PolicyError(f"{path}: expected a list of at least two labels (strings or integers), got {value!r}")
    if len(set(value)) != len(value):
        raise PolicyError(f"{path}: labels must be distinct, got {value!r}")
    if len({type(v) for v in value}) > 1:
        raise PolicyError(f"{path}: labels must be all strings or all integers, got {value!r}")
    if positive_label is not None and positive_label not in value:
        raise PolicyError(f"{path}: the positive_label {positive_label!r} is not among the classes {value!r}")
    return tuple(value)


def _metric_name(value: Any, path: str) -> str:
    from registry_hooks.statistics import METRICS

    if value not in METRICS:
        raise PolicyError(f"{path}: unknown metric {value!r}; known: {', '.join(sorted(METRICS))}")
    return value


def _threshold(data: Any, path: str) -> MetricThreshold:
    reader = _Reader(data, path)
    reader.check_keys({"metric", "margin", "tolerance"})
    return MetricThreshold(
        metric=_metric_name(data.get("metric"), f"{path}.metric"),
        margin=reader.number("margin", -1e9, 1e9) if "margin" in data else 0.0,
        tolerance=reader.number("tolerance", 0.0, 1e9) if "tolerance" in data else 0.0,
    )


def _absolute(data: Any, path: str) -> AbsoluteThreshold:
    reader = _Reader(data, path)
    reader.check_keys({"metric", "min", "max"})
    if "min" not in data and "max" not in data:
        raise PolicyError(f"{path}: give min and/or max")
    threshold = AbsoluteThreshold(
        metric=_metric_name(data.get("metric"), f"{path}.metric"),
        min=reader.number("min", -1e12, 1e12) if "min" in data else None,
        max=reader.number("max", -1e12, 1e12) if "max" in data else None,
    )
    if threshold.min is not None and threshold.max is not None and threshold.min > threshold.max:
        raise PolicyError(f"{path}: min {threshold.min} is above max {threshold.max}: nothing could pass")
    return threshold


def _list_of(data: Any, path: str, parse) -> tuple:
    if not isinstance(data, list):
        raise PolicyError(f"{path}: expected a list, got {type(data).__name__}")
    return tuple(parse(item, f"{path}[{i}]") for i, item in enumerate(data))


def _model_policy(data: dict[str, Any], path: str) -> ModelPolicy:
    root = _Reader(data, path)
    root.check_keys(set(DEFAULT_POLICY))
    targets = root.child("targets")
    targets.check_keys({"stages", "aliases"})
    stages = targets.names("stages")
    for stage in stages:
        if stage.lower() not in ("production", "staging"):
            raise PolicyError(f"{path}.targets.stages: only Production and Staging can be protected, got {stage!r}")
    aliases = targets.names("aliases")
    if not stages and not aliases:
        raise PolicyError(f"{path}.targets: protect at least one stage or alias")
    promote = root.child("promote_to")
    promote.check_keys({"alias", "stage"})
    promote_to = PromoteTo(alias=promote.optional_name("alias"), stage=promote.optional_name("stage"))
    if promote_to.alias is None and promote_to.stage is None:
        raise PolicyError(f"{path}.promote_to: name an alias, a stage or both")
    tgt = Targets(stages=tuple(s.capitalize() for s in stages), aliases=aliases)
    if promote_to.alias and not tgt.canonical_alias(promote_to.alias):
        raise PolicyError(f"{path}.promote_to.alias {promote_to.alias!r} is not among targets.aliases {list(aliases)}")
    if promote_to.stage and not tgt.protects_stage(promote_to.stage):
        raise PolicyError(f"{path}.promote_to.stage {promote_to.stage!r} is not among targets.stages {list(stages)}")

    slices = root.child("slices")
    slices.check_keys({"columns", "metric", "tolerance", "min_size", "mode", "untestable"})
    slice_metric = data["slices"].get("metric")
    evidence = root.child("evidence")
    evidence.check_keys({"max_age", "bootstrap_resamples", "positive_label", "classes", "min_rows",
                         "min_discordant", "min_per_class"})
    positive_label = data["evidence"].get("positive_label")
    if positive_label is not None and not _is_label(positive_label):
        raise PolicyError(f"{path}.evidence.positive_label: expected a label (string or integer)")
    classes = _classes(data["evidence"].get("classes"), positive_label, f"{path}.evidence.classes")
    drift = root.child("drift")
    drift.check_keys({"required", "max_share_drifted", "critical_columns", "max_age", "mode"})
    mode = data["drift"].get("mode")
    if mode not in ("block", "warn"):
        raise PolicyError(f"{path}.drift.mode: expected 'block' or 'warn', got {mode!r}")
    overrides = root.child("overrides")
    overrides.check_keys({"allowed"})
    return _check_resolution(ModelPolicy(
        targets=tgt,
        promote_to=PromoteTo(
            alias=tgt.canonical_alias(promote_to.alias) if promote_to.alias else None,
            stage=promote_to.stage.capitalize() if promote_to.stage else None,
        ),
        primary=_threshold(data.get("primary"), f"{path}.primary"),
        confidence=root.number("confidence", 0.5, 0.9999),
        secondary=_list_of(data.get("secondary") or [], f"{path}.secondary", _threshold),
        slices=SliceSpec(
            columns=slices.names("columns"),
            metric=_metric_name(slice_metric, f"{path}.slices.metric") if slice_metric else None,
            tolerance=slices.number("tolerance", 0.0, 1e9),
            min_size=int(slices.number("min_size", FLOORS.rows, 10**9, integer=True)),
            mode=slices.choice("mode", ("detect", "prove")),
            untestable=slices.choice("untestable", ("block", "skip")),
        ),
        first_release=_list_of(data.get("first_release") or [], f"{path}.first_release", _absolute),
        evidence=EvidenceRules(
            max_age_seconds=parse_duration(data["evidence"].get("max_age"), f"{path}.evidence.max_age"),
            bootstrap_resamples=int(evidence.number("bootstrap_resamples", 100, 100_000, integer=True)),
            positive_label=positive_label,
            classes=classes,
            min_rows=int(evidence.number("min_rows", FLOORS.rows, 10**9, integer=True)),
            min_discordant=int(evidence.number("min_discordant", FLOORS.discordant, 10**9, integer=True)),
            min_per_class=int(evidence.number("min_per_class", FLOORS.per_class, 10**9, integer=True)),
        ),
        drift=DriftRules(
            required=drift.boolean("required"),
            max_share_drifted=drift.number("max_share_drifted", 0.0, 1.0),
            critical_columns=drift.names("critical_columns"),
            max_age_seconds=parse_duration(data["drift"].get("max_age"), f"{path}.drift.max_age"),
            mode=mode,
        ),
        allow_overrides=overrides.boolean("allowed"),
    ), path)


def _check_resolution(policy: ModelPolicy, path: str) -> ModelPolicy:
    """Refuse settings under which a resampled metric (permutation test or bootstrap) could never
    reach significance.

    The smallest resampling p-value is 1 / (resamples + 1): with confidence 0.995 and 100
    resamples no resampled metric could ever pass, and no slice regression ever be flagged.
    """
    from registry_hooks.statistics import METRICS

    used = {policy.primary.metric, policy.slices.metric or policy.primary.metric}
    used |= {t.metric for t in policy.secondary}
    bootstrapped = sorted(m for m in used if METRICS[m].family == "aggregate")
    alpha = 1.0 - policy.confidence
    needed = math.ceil(BOOTSTRAP_RESOLUTION / alpha)
    if bootstrapped and policy.evidence.bootstrap_resamples + 1 < needed:
        raise PolicyError(
            f"{path}.evidence.bootstrap_resamples: {policy.evidence.bootstrap_resamples} resamples cannot reach "
            f"significance at confidence {policy.confidence} for {', '.join(bootstrapped)} (the smallest p, "
            f"1/(resamples + 1), must be at most (1 - confidence)/{BOOTSTRAP_RESOLUTION}); use at least {needed - 1}"
        )
    return policy


@dataclass(frozen=True)
class Policy:
    """The whole policy: defaults plus ordered per-model overrides matched by name pattern."""

    default: ModelPolicy
    overrides: tuple[tuple[str, ModelPolicy], ...]
    content_hash: str
    source: str

    def for_model(self, name: str) -> ModelPolicy:
        """The first override whose glob pattern matches ``name``, else the defaults.

        Both sides are normalised (NFKC, case, whitespace): ``ＦＲＡＵＤ-x`` or ``Fraud-x`` must not
        escape the stricter rules that ``fraud-*`` sets.
        """
        normalised = names.normalise(name)
        for pattern, model_policy in self.overrides:
            if fnmatch.fnmatchcase(normalised, names.normalise(pattern)):
                return model_policy
        return self.default

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Policy:
        root = _Reader(data if data is not None else {}, "policy")
        root.check_keys({"version", "defaults", "models"})
        if data and data.get("version", 1) != 1:
            raise PolicyError(f"policy.version: only version 1 is supported, got {data.get('version')!r}")
        data = data or {}
        defaults = _merge(DEFAULT_POLICY, _Reader(data.get("defaults", {}), "policy.defaults").data)
        default = _model_policy(defaults, "policy.defaults")
        overrides = []
        models = data.get("models") or []
        if not isinstance(models, list):
            raise PolicyError("policy.models: expected a list of {pattern: ..., ...} entries")
        for i, entry in enumerate(models):
            path = f"policy.models[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str) or not entry["pattern"]:
                raise PolicyError(f"{path}: each entry needs a 'pattern' (a glob on the model name)")
            body = {k: v for k, v in entry.items() if k != "pattern"}
            overrides.append((entry["pattern"], _model_policy(_merge(defaults, body), path)))
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return cls(
            default=default,
            overrides=tuple(overrides),
            content_hash=hashlib.sha256(canonical.encode()).hexdigest(),
            source=source,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Policy:
        """Read a ``.yaml``/``.yml`` or ``.toml`` policy file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise PolicyError(f"policy file {path} is not UTF-8 text: {exc}") from exc
        suffix = path.suffix.lower()
        try:
            if suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            elif suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                raise PolicyError(f"policy file {path}: use a .yaml, .yml or .toml file")
        except PolicyError:
            raise
        except Exception as exc:  # a syntax error from either parser
            raise PolicyError(f"policy file {path} is not valid {suffix[1:].upper()}: {exc}") from exc
        try:
            return cls.from_dict(data, source=str(path))
        except PolicyError as exc:
            raise PolicyError(f"policy file {path}: {exc}") from exc

    @classmethod
    def from_environment(cls) -> Policy:
        """The policy named by ``GATEKEEPER_POLICY``, or the built-in defaults when it is unset."""
        path = os.environ.get(POLICY_ENV_VAR, "").strip()
        return cls.load(path) if path else cls.from_dict({}, source="<built-in defaults>")

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
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from registry_hooks import names
from registry_hooks.contract import POLICY_ENV
from registry_hooks.sufficiency import BOOTSTRAP_RESOLUTION, FLOORS

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
class VerifyRules:
    """How many rows of a registered set a verifier re-scores before evidence on it is trusted
    (0: no verification — the evidence is then only as good as the evaluator's word)."""

    sample: int = 256


@dataclass(frozen=True)
class EvaluationRules:
    """Which registered evaluation sets count as evidence (``registry_hooks.eval_sets``).

    ``sets`` empty: the weak mode — evidence on any data the evaluator chose is judged (every
    attempt still counts). Otherwise the first set is the one the candidate must be shown better
    on; each further set is a guard the candidate must not be shown worse on (the primary metric,
    within ``slices.tolerance``), e.g. ``hard-cases``: a failure found once is tested forever.
    ``min_rows``: the smallest registered version of a required set the gate accepts — one number
    for every set, or in the file a mapping per set (``{golden: 1000, hard-cases: 30}``): a deciding
    set must be large enough to show an improvement, while a guard set grows from a few curated
    failures a week and still guards (the evidence floors of ``registry_hooks.sufficiency`` hold
    for every comparison). Here ``min_rows`` is the number for sets the mapping does not name (0),
    ``set_min_rows`` the named ones.
    """

    sets: tuple[str, ...] = ()
    min_rows: int = 0
    set_min_rows: tuple[tuple[str, int], ...] = ()
    verify: VerifyRules = field(default_factory=VerifyRules)

    def minimum_rows(self, set_name: str) -> int:
        """The smallest version of ``set_name`` (names compared normalised) the gate accepts."""
        wanted = names.normalise(set_name)
        return next((rows for name, rows in self.set_min_rows if names.normalise(name) == wanted), self.min_rows)

    @property
    def registered(self) -> bool:
        return bool(self.sets)

    @property
    def verified(self) -> bool:
        return self.registered and self.verify.sample > 0


@dataclass(frozen=True)
class ModelPolicy:
    """The effective rules for one registered model (defaults merged with the matching override).

    The field defaults here (and in the section classes above) are the built-in policy, defined
    once: ``DEFAULT_POLICY``, the file-shaped mapping policies are merged onto, is derived from them.
    """

    targets: Targets = field(default_factory=Targets)
    promote_to: PromoteTo = field(default_factory=PromoteTo)
    primary: MetricThreshold = field(default_factory=lambda: MetricThreshold("accuracy"))
    confidence: float = 0.95
    secondary: tuple[MetricThreshold, ...] = ()
    slices: SliceSpec = field(default_factory=SliceSpec)
    first_release: tuple[AbsoluteThreshold, ...] = ()
    evidence: EvidenceRules = field(default_factory=EvidenceRules)
    drift: DriftRules = field(default_factory=DriftRules)
    evaluation: EvaluationRules = field(default_factory=EvaluationRules)
    allow_overrides: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _file_form(policy: ModelPolicy) -> dict[str, Any]:
    """``policy`` spelled as a policy file spells it (lists, ``max_age``, ``overrides.allowed``).

    The dataclasses above hold the defaults; this is their file shape, onto which a file's
    ``defaults`` and each ``models`` entry are merged, and whose keys are the keys a file may use.
    """
    data = json.loads(json.dumps(asdict(policy)))  # tuples become lists, as YAML and TOML give them
    for section in ("evidence", "drift"):
        data[section]["max_age"] = data[section].pop("max_age_seconds")
    data["evaluation"].pop("set_min_rows")  # the file spells it as a mapping under min_rows
    data["overrides"] = {"allowed": data.pop("allow_overrides")}
    return data


DEFAULT_POLICY: dict[str, Any] = _file_form(ModelPolicy())


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


def _toml():
    """The TOML reader: the standard library's from Python 3.11, its ``tomli`` original before
    (declared in setup.cfg for Python 3.10 only)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib


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
    bounds = {"margin": (-1e9, 1e9), "tolerance": (0.0, 1e9)}  # absent: the dataclass's default
    return MetricThreshold(metric=_metric_name(data.get("metric"), f"{path}.metric"),
                           **{key: reader.number(key, *bounds[key]) for key in bounds if key in data})


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


def _section(root: _Reader, key: str) -> _Reader:
    """One section of a model's rules; its allowed keys are those the defaults spell."""
    section = root.child(key)
    section.check_keys(set(DEFAULT_POLICY[key]))
    return section


def _targets(root: _Reader, path: str) -> tuple[Targets, PromoteTo]:
    """What is protected, and what a promotion moves: both in the policy's spelling, the second
    among the first (a promotion must never move a target the gate does not guard)."""
    targets = _section(root, "targets")
    stages = targets.names("stages")
    for stage in stages:
        if stage.lower() not in ("production", "staging"):
            raise PolicyError(f"{path}.targets.stages: only Production and Staging can be protected, got {stage!r}")
    aliases = targets.names("aliases")
    if not stages and not aliases:
        raise PolicyError(f"{path}.targets: protect at least one stage or alias")
    promote = _section(root, "promote_to")
    alias, stage = promote.optional_name("alias"), promote.optional_name("stage")
    if alias is None and stage is None:
        raise PolicyError(f"{path}.promote_to: name an alias, a stage or both")
    protected = Targets(stages=tuple(s.capitalize() for s in stages), aliases=aliases)
    if alias and not protected.canonical_alias(alias):
        raise PolicyError(f"{path}.promote_to.alias {alias!r} is not among targets.aliases {list(aliases)}")
    if stage and not protected.protects_stage(stage):
        raise PolicyError(f"{path}.promote_to.stage {stage!r} is not among targets.stages {list(stages)}")
    return protected, PromoteTo(alias=protected.canonical_alias(alias) if alias else None,
                                stage=stage.capitalize() if stage else None)


def _labels(evidence: _Reader, path: str) -> tuple[str | int | None, tuple[str | int, ...] | None]:
    """The positive label and the declared label set, checked against each other."""
    positive_label = evidence.data.get("positive_label")
    if positive_label is not None and not _is_label(positive_label):
        raise PolicyError(f"{path}.evidence.positive_label: expected a label (string or integer)")
    return positive_label, _classes(evidence.data.get("classes"), positive_label, f"{path}.evidence.classes")


def _slice_spec(slices: _Reader, path: str) -> SliceSpec:
    metric = slices.data.get("metric")
    return SliceSpec(
        columns=slices.names("columns"),
        metric=_metric_name(metric, f"{path}.slices.metric") if metric else None,
        tolerance=slices.number("tolerance", 0.0, 1e9),
        min_size=int(slices.number("min_size", FLOORS.rows, 10**9, integer=True)),
        mode=slices.choice("mode", ("detect", "prove")),
        untestable=slices.choice("untestable", ("block", "skip")),
    )


def _evidence_rules(evidence: _Reader, labels: tuple[Any, Any], path: str) -> EvidenceRules:
    """Freshness, resampling and labels; the minimums may be raised above ``FLOORS``, never lowered."""
    positive_label, classes = labels
    return EvidenceRules(
        max_age_seconds=parse_duration(evidence.data.get("max_age"), f"{path}.evidence.max_age"),
        bootstrap_resamples=int(evidence.number("bootstrap_resamples", 100, 100_000, integer=True)),
        positive_label=positive_label,
        classes=classes,
        min_rows=int(evidence.number("min_rows", FLOORS.rows, 10**9, integer=True)),
        min_discordant=int(evidence.number("min_discordant", FLOORS.discordant, 10**9, integer=True)),
        min_per_class=int(evidence.number("min_per_class", FLOORS.per_class, 10**9, integer=True)),
    )


def _evaluation_rules(evaluation: _Reader, path: str) -> EvaluationRules:
    """The required sets (distinct after normalising: ``Golden`` and ``golden`` are one set)."""
    sets = evaluation.names("sets")
    seen = [names.normalise(s) for s in sets]
    if len(set(seen)) != len(seen):
        raise PolicyError(f"{path}.evaluation.sets: a set is named twice (names compare case- and width-blind): {list(sets)}")
    verify = evaluation.child("verify")
    verify.check_keys(set(DEFAULT_POLICY["evaluation"]["verify"]))
    every, per_set = _set_minimums(evaluation, dict(zip(seen, sets)), path)
    return EvaluationRules(
        sets=tuple(s.strip() for s in sets),
        min_rows=every,
        set_min_rows=per_set,
        verify=VerifyRules(sample=int(verify.number("sample", 0, 10**6, integer=True))),
    )


def _set_minimums(evaluation: _Reader, required: dict[str, str], path: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    """``min_rows``: an integer for every set, or a mapping from required sets to integers (a set
    the mapping leaves out needs no minimum beyond the evidence floors). A name that is not a
    required set is refused: a misspelt set would otherwise silently drop its minimum."""
    value = evaluation.data.get("min_rows")
    if not isinstance(value, dict):
        return int(evaluation.number("min_rows", 0, 10**12, integer=True)), ()
    per_set = _Reader(value, f"{path}.evaluation.min_rows")
    found = []
    for name in value:
        key = names.normalise(name) if isinstance(name, str) else None
        if key not in required:
            raise PolicyError(f"{path}.evaluation.min_rows: {name!r} is not one of evaluation.sets "
                              f"({', '.join(required.values()) or 'none'})")
        found.append((required[key].strip(), int(per_set.number(name, 0, 10**12, integer=True))))
    return 0, tuple(found)


def _drift_rules(drift: _Reader, path: str) -> DriftRules:
    return DriftRules(
        required=drift.boolean("required"),
        max_share_drifted=drift.number("max_share_drifted", 0.0, 1.0),
        critical_columns=drift.names("critical_columns"),
        max_age_seconds=parse_duration(drift.data.get("max_age"), f"{path}.drift.max_age"),
        mode=drift.data["mode"],  # checked by _model_policy before anything is built
    )


def _model_policy(data: dict[str, Any], path: str) -> ModelPolicy:
    """One model's rules from its merged mapping (every key present: the defaults are merged in).

    Each section's keys (and the rules that tie its fields together) are checked before its values
    are read, so a misspelt key is named as such rather than reported as a bad value.
    """
    root = _Reader(data, path)
    root.check_keys(set(DEFAULT_POLICY))
    targets, promote_to = _targets(root, path)
    slices = _section(root, "slices")
    evidence = _section(root, "evidence")
    labels = _labels(evidence, path)
    drift = _section(root, "drift")
    if drift.data.get("mode") not in ("block", "warn"):
        raise PolicyError(f"{path}.drift.mode: expected 'block' or 'warn', got {drift.data.get('mode')!r}")
    evaluation = _section(root, "evaluation")
    overrides = _section(root, "overrides")
    return _check_resolution(ModelPolicy(
        targets=targets,
        promote_to=promote_to,
        primary=_threshold(data.get("primary"), f"{path}.primary"),
        confidence=root.number("confidence", 0.5, 0.9999),
        secondary=_list_of(data.get("secondary") or [], f"{path}.secondary", _threshold),
        slices=_slice_spec(slices, path),
        first_release=_list_of(data.get("first_release") or [], f"{path}.first_release", _absolute),
        evidence=_evidence_rules(evidence, labels, path),
        drift=_drift_rules(drift, path),
        evaluation=_evaluation_rules(evaluation, path),
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
    registrars: tuple[str, ...] = ()  # users besides admins who may register evaluation sets (basic-auth)

    def may_register_sets(self, username: str | None) -> bool:
        """Whether ``username`` is one of the policy's ``registrars`` (names compared normalised)."""
        return username is not None and names.normalise(username) in {names.normalise(u) for u in self.registrars}

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
        root.check_keys({"version", "defaults", "models", "registrars"})
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
            registrars=root.names("registrars"),
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
                data = _toml().loads(text)
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
        path = os.environ.get(POLICY_ENV, "").strip()
        return cls.load(path) if path else cls.from_dict({}, source="<built-in defaults>")

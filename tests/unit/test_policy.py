"""Tests for registry_hooks.policy: defaults, file formats, per-model overrides, validation, hashing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from registry_hooks.contract import POLICY_ENV
from registry_hooks.policy import (
    AbsoluteThreshold,
    DriftRules,
    EvidenceRules,
    MetricThreshold,
    ModelPolicy,
    Policy,
    PolicyError,
    PromoteTo,
    SliceSpec,
    Targets,
    parse_duration,
)

# The same policy in both file formats (TOML has no null, so none is used).
POLICY_YAML = """
version: 1
defaults:
  targets: {stages: [Production, Staging], aliases: [champion, Gold]}
  promote_to: {alias: champion, stage: Production}
  primary: {metric: accuracy, margin: 0.01}
  confidence: 0.99
  secondary:
    - {metric: log_loss, tolerance: 0.05}
  slices: {columns: [weather, region], tolerance: 0.03, min_size: 50}
  first_release:
    - {metric: accuracy, min: 0.8}
  evidence: {max_age: 12h, bootstrap_resamples: 2000, positive_label: 1}
  drift: {required: true, max_share_drifted: 0.25, critical_columns: [age], max_age: 3d, mode: warn}
  overrides: {allowed: false}
models:
  - pattern: "fraud-*"
    primary: {metric: roc_auc}
    slices: {min_size: 200}
  - pattern: "fraud-eu-*"
    confidence: 0.9
"""

POLICY_TOML = """
version = 1

[defaults]
confidence = 0.99
secondary = [{metric = "log_loss", tolerance = 0.05}]
first_release = [{metric = "accuracy", min = 0.8}]

[defaults.targets]
stages = ["Production", "Staging"]
aliases = ["champion", "Gold"]

[defaults.promote_to]
alias = "champion"
stage = "Production"

[defaults.primary]
metric = "accuracy"
margin = 0.01

[defaults.slices]
columns = ["weather", "region"]
tolerance = 0.03
min_size = 50

[defaults.evidence]
max_age = "12h"
bootstrap_resamples = 2000
positive_label = 1

[defaults.drift]
required = true
max_share_drifted = 0.25
critical_columns = ["age"]
max_age = "3d"
mode = "warn"

[defaults.overrides]
allowed = false

[[models]]
pattern = "fraud-*"
primary = {metric = "roc_auc"}
slices = {min_size = 200}

[[models]]
pattern = "fraud-eu-*"
confidence = 0.9
"""

EXPECTED_DEFAULT = ModelPolicy(
    targets=Targets(stages=("Production", "Staging"), aliases=("champion", "Gold")),
    promote_to=PromoteTo(alias="champion", stage="Production"),
    primary=MetricThreshold("accuracy", margin=0.01),
    confidence=0.99,
    secondary=(MetricThreshold("log_loss", tolerance=0.05),),
    slices=SliceSpec(columns=("weather", "region"), metric=None, tolerance=0.03, min_size=50),
    first_release=(AbsoluteThreshold("accuracy", min=0.8),),
    evidence=EvidenceRules(max_age_seconds=12 * 3600, bootstrap_resamples=2000, positive_label=1),
    drift=DriftRules(required=True, max_share_drifted=0.25, critical_columns=("age",), max_age_seconds=3 * 86400, mode="warn"),
    allow_overrides=False,
)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def defaults(**section) -> dict:
    return {"version": 1, "defaults": section}


# ------------------------------------------------------------------ built-in defaults


def test_builtin_defaults_when_env_var_unset(monkeypatch):
    monkeypatch.delenv(POLICY_ENV, raising=False)
    policy = Policy.from_environment()
    assert policy.source == "<built-in defaults>"
    assert policy.overrides == ()
    assert policy.default == ModelPolicy()  # the dataclass defaults and DEFAULT_POLICY agree
    p = policy.for_model("anything")
    assert p.targets.stages == ("Production",) and p.targets.aliases == ("champion",)
    assert p.promote_to == PromoteTo(alias="champion", stage="Production")
    assert p.primary == MetricThreshold("accuracy", 0.0, 0.0)
    assert p.confidence == 0.95
    assert p.evidence.max_age_seconds == 7 * 86400 and p.drift.max_age_seconds == 7 * 86400
    assert p.drift.required is False and p.allow_overrides is True
    assert re.fullmatch(r"[0-9a-f]{64}", policy.content_hash)


def test_blank_env_var_means_builtin_defaults(monkeypatch):
    monkeypatch.setenv(POLICY_ENV, "   ")
    assert Policy.from_environment().source == "<built-in defaults>"


def test_env_var_names_the_policy_file(monkeypatch, tmp_path):
    path = write(tmp_path, "policy.yaml", POLICY_YAML)
    monkeypatch.setenv(POLICY_ENV, str(path))
    policy = Policy.from_environment()
    assert policy.source == str(path)
    assert policy.default == EXPECTED_DEFAULT


def test_env_var_naming_a_missing_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(POLICY_ENV, str(tmp_path / "absent.yaml"))
    with pytest.raises(PolicyError, match="cannot read policy file .*absent.yaml"):
        Policy.from_environment()


def test_empty_yaml_file_is_the_builtin_defaults(tmp_path):
    policy = Policy.load(write(tmp_path, "empty.yml", "# nothing configured\n"))
    assert policy.default == ModelPolicy()
    assert policy.content_hash == Policy.from_dict({}).content_hash


# ----------------------------------------------------------------------- file formats


def test_yaml_and_toml_give_the_same_policy(tmp_path):
    from_yaml = Policy.load(write(tmp_path, "policy.yaml", POLICY_YAML))
    from_toml = Policy.load(write(tmp_path, "policy.toml", POLICY_TOML))
    assert from_yaml.default == from_toml.default == EXPECTED_DEFAULT
    assert from_yaml.overrides == from_toml.overrides
    assert [pattern for pattern, _ in from_yaml.overrides] == ["fraud-*", "fraud-eu-*"]
    assert from_yaml.content_hash == from_toml.content_hash  # same content, same hash
    assert from_yaml.source.endswith("policy.yaml") and from_toml.source.endswith("policy.toml")


def test_yml_extension_and_uppercase_extension_are_accepted(tmp_path):
    a = Policy.load(write(tmp_path, "a.yml", POLICY_YAML))
    b = Policy.load(write(tmp_path, "b.YAML", POLICY_YAML))
    assert a.default == b.default == EXPECTED_DEFAULT


def test_to_dict_is_plain_data():
    data = Policy.from_dict({}).default.to_dict()
    assert data["primary"] == {"metric": "accuracy", "margin": 0.0, "tolerance": 0.0}
    assert data["targets"] == {"stages": ("Production",), "aliases": ("champion",)}


# ------------------------------------------------------------------ per-model patterns


def test_first_matching_pattern_wins_and_others_fall_back_to_defaults(tmp_path):
    policy = Policy.load(write(tmp_path, "policy.yaml", POLICY_YAML))
    fraud = policy.for_model("fraud-us-1")
    fraud_eu = policy.for_model("fraud-eu-1")  # matches both; "fraud-*" is listed first
    assert fraud.primary.metric == "roc_auc"
    assert fraud_eu is fraud
    assert fraud_eu.confidence == 0.99  # the second entry's 0.9 never applies
    assert policy.for_model("churn") is policy.default
    # Names are normalised before matching: a case, width or spacing variant cannot escape "fraud-*".
    for variant in ("Fraud-us-1", "FRAUD-us-1", "\uff26\uff32\uff21\uff35\uff24-us-1", " fraud-us-1 "):
        assert policy.for_model(variant) is fraud, variant


def test_order_of_patterns_decides(tmp_path):
    policy = Policy.from_dict({
        "models": [
            {"pattern": "fraud-eu-*", "confidence": 0.9},
            {"pattern": "fraud-*", "confidence": 0.8},
        ]
    })
    assert policy.for_model("fraud-eu-1").confidence == 0.9
    assert policy.for_model("fraud-us-1").confidence == 0.8
    assert policy.for_model("churn").confidence == 0.95


def test_glob_features_are_supported():
    policy = Policy.from_dict({"models": [{"pattern": "model-[ab]?", "confidence": 0.9}]})
    assert policy.for_model("model-a1").confidence == 0.9
    assert policy.for_model("model-c1").confidence == 0.95
    assert policy.for_model("model-a12").confidence == 0.95


def test_override_is_deep_merged_onto_the_configured_defaults(tmp_path):
    policy = Policy.load(write(tmp_path, "policy.yaml", POLICY_YAML))
    fraud = policy.for_model("fraud-1")
    # primary: metric from the override, margin kept from the defaults
    assert fraud.primary == MetricThreshold("roc_auc", margin=0.01)
    # slices: min_size from the override, everything else from the defaults
    assert fraud.slices == SliceSpec(columns=("weather", "region"), metric=None, tolerance=0.03, min_size=200)
    # untouched sections are the (user-configured, not built-in) defaults
    assert fraud.confidence == 0.99
    assert fraud.drift == EXPECTED_DEFAULT.drift
    assert fraud.evidence == EXPECTED_DEFAULT.evidence
    assert fraud.secondary == EXPECTED_DEFAULT.secondary
    # the defaults themselves are not changed by the override
    assert policy.default.slices.min_size == 50
    assert policy.default.primary.metric == "accuracy"


def test_lists_in_an_override_replace_rather_than_extend():
    policy = Policy.from_dict({
        "defaults": {"secondary": [{"metric": "log_loss", "tolerance": 0.05}], "slices": {"columns": ["a", "b"]}},
        "models": [{"pattern": "x", "secondary": [{"metric": "f1", "tolerance": 0.01}], "slices": {"columns": ["c"]}}],
    })
    assert policy.for_model("x").secondary == (MetricThreshold("f1", tolerance=0.01),)
    assert policy.for_model("x").slices.columns == ("c",)
    assert policy.default.slices.columns == ("a", "b")


def test_override_errors_name_the_model_entry():
    with pytest.raises(PolicyError, match=re.escape("policy.models[1].confidence")):
        Policy.from_dict({"models": [{"pattern": "a"}, {"pattern": "b", "confidence": 2}]})


# --------------------------------------------------------------------------- aliases


def test_canonical_alias_is_case_insensitive():
    targets = Targets(stages=("Production",), aliases=("Champion", "gold"))
    assert targets.canonical_alias("champion") == "Champion"
    assert targets.canonical_alias("CHAMPION") == "Champion"
    assert targets.canonical_alias("Gold") == "gold"
    assert targets.canonical_alias("challenger") is None
    assert targets.protects_stage("production") and targets.protects_stage("PRODUCTION")
    assert not targets.protects_stage("Staging")


def test_promote_to_is_canonicalised_to_the_policy_spelling():
    policy = Policy.from_dict(defaults(
        targets={"stages": ["production", "STAGING"], "aliases": ["Champion"]},
        promote_to={"alias": "CHAMPION", "stage": "staging"},
    ))
    assert policy.default.targets.stages == ("Production", "Staging")
    assert policy.default.promote_to == PromoteTo(alias="Champion", stage="Staging")


def test_promote_to_alias_may_be_null_when_a_stage_is_named():
    policy = Policy.from_dict(defaults(targets={"aliases": []}, promote_to={"alias": None, "stage": "Production"}))
    assert policy.default.promote_to == PromoteTo(alias=None, stage="Production")
    assert policy.default.targets.aliases == ()


# ------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "value, seconds",
    [("7d", 604800.0), ("12h", 43200.0), ("30m", 1800.0), ("90s", 90.0), ("1.5h", 5400.0), (" 2w ", 1209600.0),
     (3600, 3600.0), (0.5, 0.5)],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value, "k") == seconds


@pytest.mark.parametrize("value", ["7x", "d", "", "7 days", "7D", "-1d", None, True, [1], "0d", 0, -5])
def test_parse_duration_rejects(value):
    with pytest.raises(PolicyError, match=r"^evidence\.max_age: "):
        parse_duration(value, "evidence.max_age")


# ------------------------------------------------------------------------ validation

INVALID = [
    # (policy data, key path the message must name, another fragment it must contain)
    ({"defaults": {"primry": {}}}, "policy.defaults", "unknown key(s) primry"),
    ({"colour": "blue"}, "policy", "unknown key(s) colour"),
    ({"version": 2}, "policy.version", "only version 1"),
    ({"defaults": {"slices": {"columns": ["a"], "size": 3}}}, "policy.defaults.slices", "unknown key(s) size"),
    ({"defaults": {"drift": {"share": 0.1}}}, "policy.defaults.drift", "unknown key(s) share"),
    ({"defaults": {"evidence": {"maxage": "1d"}}}, "policy.defaults.evidence", "unknown key(s) maxage"),
    ({"defaults": {"targets": {"stage": ["Production"]}}}, "policy.defaults.targets", "unknown key(s) stage"),
    ({"defaults": {"primary": {"metric": "accuracy", "tol": 1}}}, "policy.defaults.primary", "unknown key(s) tol"),
    ({"defaults": {"overrides": {"allow": True}}}, "policy.defaults.overrides", "unknown key(s) allow"),
    ({"models": [{"pattern": "x", "primry": {}}]}, "policy.models[0]", "unknown key(s) primry"),
    ({"defaults": {"primary": {"metric": "auc"}}}, "policy.defaults.primary.metric", "unknown metric 'auc'"),
    ({"defaults": {"secondary": [{"metric": "log_loss"}, {"metric": "logloss"}]}},
     "policy.defaults.secondary[1].metric", "unknown metric 'logloss'"),
    ({"defaults": {"slices": {"metric": "acc"}}}, "policy.defaults.slices.metric", "unknown metric 'acc'"),
    ({"defaults": {"first_release": [{"metric": "nope", "min": 0.5}]}}, "policy.defaults.first_release[0].metric", "unknown metric"),
    ({"defaults": {"first_release": [{"metric": "accuracy"}]}}, "policy.defaults.first_release[0]", "give min and/or max"),
    ({"defaults": {"confidence": 1.0}}, "policy.defaults.confidence", "[0.5, 0.9999]"),
    ({"defaults": {"confidence": 0.3}}, "policy.defaults.confidence", "got 0.3"),
    ({"defaults": {"confidence": "high"}}, "policy.defaults.confidence", "expected a number"),
    ({"defaults": {"confidence": True}}, "policy.defaults.confidence", "expected a number"),
    ({"defaults": {"secondary": [{"metric": "log_loss", "tolerance": -0.1}]}},
     "policy.defaults.secondary[0].tolerance", "got -0.1"),
    ({"defaults": {"slices": {"tolerance": -0.01}}}, "policy.defaults.slices.tolerance", "got -0.01"),
    ({"defaults": {"slices": {"min_size": 0}}}, "policy.defaults.slices.min_size", "expected an integer"),
    ({"defaults": {"slices": {"min_size": 30.5}}}, "policy.defaults.slices.min_size", "expected an integer"),
    ({"defaults": {"evidence": {"bootstrap_resamples": 10}}}, "policy.defaults.evidence.bootstrap_resamples", "[100, 100000]"),
    ({"defaults": {"evidence": {"max_age": "7x"}}}, "policy.defaults.evidence.max_age", "'7x'"),
    ({"defaults": {"drift": {"max_age": "soon"}}}, "policy.defaults.drift.max_age", "'soon'"),
    ({"defaults": {"evidence": {"max_age": "0h"}}}, "policy.defaults.evidence.max_age", "must be positive"),
    ({"defaults": {"evidence": {"positive_label": 1.5}}}, "policy.defaults.evidence.positive_label", "string or integer"),
    ({"defaults": {"drift": {"max_share_drifted": 1.5}}}, "policy.defaults.drift.max_share_drifted", "[0.0, 1.0]"),
    ({"defaults": {"drift": {"required": "yes"}}}, "policy.defaults.drift.required", "true or false"),
    ({"defaults": {"drift": {"mode": "off"}}}, "policy.defaults.drift.mode", "'block' or 'warn'"),
    ({"defaults": {"drift": {"critical_columns": ["age", ""]}}}, "policy.defaults.drift.critical_columns", "non-empty names"),
    ({"defaults": {"overrides": {"allowed": 1}}}, "policy.defaults.overrides.allowed", "true or false"),
    ({"defaults": {"promote_to": {"alias": "gold"}}}, "policy.defaults.promote_to.alias", "'gold' is not among targets.aliases"),
    ({"defaults": {"targets": {"aliases": ["gold"]}}}, "policy.defaults.promote_to.alias", "'champion' is not among targets.aliases"),
    ({"defaults": {"promote_to": {"stage": "Staging"}}}, "policy.defaults.promote_to.stage", "'Staging' is not among targets.stages"),
    ({"defaults": {"promote_to": {"alias": None, "stage": None}}}, "policy.defaults.promote_to", "name an alias, a stage or both"),
    ({"defaults": {"promote_to": {"alias": ""}}}, "policy.defaults.promote_to.alias", "a name or null"),
    ({"defaults": {"targets": {"stages": ["Archived"]}}}, "policy.defaults.targets.stages", "only Production and Staging"),
    ({"defaults": {"targets": {"stages": ["None"]}}}, "policy.defaults.targets.stages", "'None'"),
    ({"defaults": {"targets": {"stages": [], "aliases": []}}}, "policy.defaults.targets", "protect at least one stage or alias"),
    ({"defaults": {"targets": {"stages": "Production"}}}, "policy.defaults.targets.stages", "list of non-empty names"),
    ({"defaults": {"targets": ["Production"]}}, "policy.defaults.targets", "expected a mapping, got list"),
    ({"defaults": {"slices": "weather"}}, "policy.defaults.slices", "expected a mapping, got str"),
    ({"defaults": {"primary": "accuracy"}}, "policy.defaults.primary", "expected a mapping, got str"),
    ({"defaults": {"drift": None}}, "policy.defaults.drift", "expected a mapping, got NoneType"),
    ({"defaults": {"secondary": {"metric": "log_loss"}}}, "policy.defaults.secondary", "expected a list, got dict"),
    ({"defaults": {"secondary": ["log_loss"]}}, "policy.defaults.secondary[0]", "expected a mapping, got str"),
    ({"defaults": ["a"]}, "policy.defaults", "expected a mapping, got list"),
    (["a"], "policy", "expected a mapping, got list"),
    ({"models": {"pattern": "x"}}, "policy.models", "expected a list"),
    ({"models": [{"confidence": 0.9}]}, "policy.models[0]", "needs a 'pattern'"),
    ({"models": [{"pattern": ""}]}, "policy.models[0]", "needs a 'pattern'"),
    ({"models": ["x"]}, "policy.models[0]", "needs a 'pattern'"),
]


@pytest.mark.parametrize("data, path, fragment", INVALID, ids=[f"{i}:{p}" for i, (_, p, _) in enumerate(INVALID)])
def test_validation_errors_name_the_key_path(data, path, fragment):
    with pytest.raises(PolicyError) as info:
        Policy.from_dict(data)
    message = str(info.value)
    assert message.startswith(path + ":") or message.startswith(path + " "), message
    assert fragment in message, message


def test_unknown_key_message_lists_the_allowed_keys():
    with pytest.raises(PolicyError) as info:
        Policy.from_dict(defaults(slices={"colums": ["a"]}))
    assert "allowed: columns, metric, min_size, mode, tolerance, untestable" in str(info.value)


def test_unknown_metric_message_lists_the_known_metrics():
    with pytest.raises(PolicyError) as info:
        Policy.from_dict(defaults(primary={"metric": "auc"}))
    assert "roc_auc" in str(info.value) and "accuracy" in str(info.value)


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


# ------------------------------------------------------------------------ file errors


def test_unreadable_file(tmp_path):
    with pytest.raises(PolicyError, match=r"cannot read policy file .*missing\.yaml"):
        Policy.load(tmp_path / "missing.yaml")
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    with pytest.raises(PolicyError, match=r"cannot read policy file .*dir\.yaml"):
        Policy.load(directory)


def test_invalid_yaml_syntax(tmp_path):
    path = write(tmp_path, "bad.yaml", "defaults:\n  primary: {metric: accuracy\n")
    with pytest.raises(PolicyError, match=r"policy file .*bad\.yaml is not valid YAML"):
        Policy.load(path)


def test_invalid_toml_syntax(tmp_path):
    path = write(tmp_path, "bad.toml", "[defaults\nconfidence = 0.9\n")
    with pytest.raises(PolicyError, match=r"policy file .*bad\.toml is not valid TOML"):
        Policy.load(path)


@pytest.mark.parametrize("name", ["policy.json", "policy.txt", "policy"])
def test_wrong_extension(tmp_path, name):
    path = write(tmp_path, name, '{"version": 1}')
    with pytest.raises(PolicyError, match="use a .yaml, .yml or .toml file"):
        Policy.load(path)


def test_validation_error_from_a_file_names_the_file_and_the_key(tmp_path):
    path = write(tmp_path, "p.yaml", "defaults:\n  confidence: 2\n")
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    assert str(path) in str(info.value)
    assert "policy.defaults.confidence" in str(info.value)


def test_top_level_list_in_a_file(tmp_path):
    with pytest.raises(PolicyError, match=r"policy: expected a mapping, got list"):
        Policy.load(write(tmp_path, "p.yaml", "- a\n- b\n"))


def test_non_utf8_file_is_a_policy_error(tmp_path):
    path = write(tmp_path, "latin1.yaml", "defaults:\n  confidence: 0.9  # r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError, match="latin1.yaml"):
        Policy.load(path)


def test_first_release_min_above_max_is_rejected():
    with pytest.raises(PolicyError, match=re.escape("policy.defaults.first_release[0]")):
        Policy.from_dict(defaults(first_release=[{"metric": "accuracy", "min": 0.9, "max": 0.5}]))


# ---------------------------------------------------------------------- content hash


def test_content_hash_is_stable_across_key_order():
    a = {"version": 1, "defaults": {"confidence": 0.9, "primary": {"metric": "f1", "margin": 0.01}},
         "models": [{"pattern": "x", "confidence": 0.99}]}
    b = {"models": [{"confidence": 0.99, "pattern": "x"}],
         "defaults": {"primary": {"margin": 0.01, "metric": "f1"}, "confidence": 0.9}, "version": 1}
    assert Policy.from_dict(a).content_hash == Policy.from_dict(b).content_hash


def test_content_hash_is_stable_across_files_with_different_key_order(tmp_path):
    one = write(tmp_path, "one.yaml", "defaults:\n  confidence: 0.9\n  evidence: {max_age: 1d}\n")
    two = write(tmp_path, "two.yaml", "defaults:\n  evidence:\n    max_age: 1d\n  confidence: 0.9\n")
    assert Policy.load(one).content_hash == Policy.load(two).content_hash
    assert Policy.load(one).content_hash == Policy.load(one).content_hash


@pytest.mark.parametrize(
    "other",
    [
        {"defaults": {"confidence": 0.91}},
        {"defaults": {"confidence": 0.9, "primary": {"metric": "f1"}}},
        {"defaults": {"confidence": 0.9}, "models": [{"pattern": "x", "confidence": 0.9}]},
    ],
)
def test_content_hash_differs_for_different_content(other):
    base = Policy.from_dict({"defaults": {"confidence": 0.9}})
    assert Policy.from_dict(other).content_hash != base.content_hash


def test_model_order_is_content():
    a = {"models": [{"pattern": "a*", "confidence": 0.9}, {"pattern": "b*", "confidence": 0.8}]}
    b = {"models": [{"pattern": "b*", "confidence": 0.8}, {"pattern": "a*", "confidence": 0.9}]}
    assert Policy.from_dict(a).content_hash != Policy.from_dict(b).content_hash


# ------------------------------------------------------- minimum evidence, label set, slice modes


def with_defaults(**section) -> Policy:
    return Policy.from_dict({"version": 1, "defaults": section})


@pytest.mark.parametrize("key, floor", [("min_rows", 30), ("min_discordant", 10), ("min_per_class", 10)])
def test_minimums_may_be_raised_but_not_dropped_below_the_floor(key, floor):
    assert getattr(with_defaults().default.evidence, key) == floor
    assert getattr(with_defaults(evidence={key: floor * 3}).default.evidence, key) == floor * 3
    with pytest.raises(PolicyError, match=rf"policy.defaults.evidence.{key}: expected an integer in \[{floor}, "):
        with_defaults(evidence={key: floor - 1})
    with pytest.raises(PolicyError, match=r"policy.defaults.slices.min_size: expected an integer in \[30, "):
        with_defaults(slices={"min_size": 5})


def test_the_label_set_is_declared_whole_and_holds_the_positive_label():
    policy = with_defaults(evidence={"classes": ["ham", "spam"], "positive_label": "spam"}).default
    assert policy.evidence.classes == ("ham", "spam")
    for classes, message in [(["spam"], "at least two labels"), (["a", "a"], "distinct"), ([0, "a"], "all strings or all"),
                             (["ham", "eggs"], "positive_label 'spam' is not among"), ([True, False], "at least two labels")]:
        with pytest.raises(PolicyError, match=message):
            with_defaults(evidence={"classes": classes, "positive_label": "spam"})


def test_slice_modes_and_untestable_slices_are_choices():
    spec = with_defaults(slices={"mode": "prove", "untestable": "skip"}).default.slices
    assert (spec.mode, spec.untestable) == ("prove", "skip")
    assert (with_defaults().default.slices.mode, with_defaults().default.slices.untestable) == ("detect", "block")
    with pytest.raises(PolicyError, match="slices.mode: expected one of 'detect', 'prove', got 'strict'"):
        with_defaults(slices={"mode": "strict"})


def test_confidence_and_resamples_that_cannot_reach_significance_are_refused():
    with pytest.raises(PolicyError, match=r"100 resamples cannot reach significance at confidence 0.995 for f1.*use at least 1999"):
        with_defaults(primary={"metric": "f1"}, confidence=0.995, evidence={"bootstrap_resamples": 100})
    assert with_defaults(primary={"metric": "f1"}, confidence=0.995, evidence={"bootstrap_resamples": 2000})
    assert with_defaults(confidence=0.995, evidence={"bootstrap_resamples": 100})  # accuracy is not bootstrapped
    with pytest.raises(PolicyError, match="for roc_auc"):
        with_defaults(primary={"metric": "mae"}, secondary=[{"metric": "roc_auc"}], confidence=0.99,
                      evidence={"bootstrap_resamples": 500})
    assert with_defaults(primary={"metric": "rmse"}, confidence=0.99, evidence={"bootstrap_resamples": 100})


def test_evaluation_min_rows_per_set():
    """One number for every set, or a mapping per required set; a set it leaves out needs none."""
    every = Policy.from_dict({"defaults": {"evaluation": {"sets": ["golden", "hard-cases"], "min_rows": 500}}})
    assert [every.default.evaluation.minimum_rows(s) for s in ("golden", "hard-cases")] == [500, 500]
    mapped = Policy.from_dict({"defaults": {"evaluation": {"sets": ["golden", "Hard-Cases"],
                                                         "min_rows": {"golden": 1000, "hard-cases": 30}}}})
    rules = mapped.default.evaluation
    assert [rules.minimum_rows(s) for s in ("golden", "ＨＡＲＤ-cases ", "other")] == [1000, 30, 0]
    assert mapped.default.to_dict()["evaluation"]["set_min_rows"] == (("golden", 1000), ("Hard-Cases", 30))
    partial = Policy.from_dict({"defaults": {"evaluation": {"sets": ["golden", "hard-cases"], "min_rows": {"golden": 9}}}})
    assert partial.default.evaluation.minimum_rows("hard-cases") == 0


@pytest.mark.parametrize("min_rows, fragment", [
    ({"goldne": 1000}, "'goldne' is not one of evaluation.sets (golden)"),
    ({"golden": -1}, "policy.defaults.evaluation.min_rows.golden: expected an integer"),
    ({"golden": 1.5}, "policy.defaults.evaluation.min_rows.golden: expected an integer"),
    ({"golden": True}, "policy.defaults.evaluation.min_rows.golden: expected an integer"),
    ({"golden": "1000"}, "policy.defaults.evaluation.min_rows.golden: expected an integer"),
    ({1: 5}, "1 is not one of evaluation.sets"),
    ("1000", "policy.defaults.evaluation.min_rows: expected an integer"),
])
def test_evaluation_min_rows_refuses_what_it_cannot_apply(min_rows, fragment):
    with pytest.raises(PolicyError) as info:
        Policy.from_dict({"defaults": {"evaluation": {"sets": ["golden"], "min_rows": min_rows}}})
    assert fragment in str(info.value)


def test_set_min_rows_is_not_a_file_key():
    with pytest.raises(PolicyError, match="unknown key.*set_min_rows"):
        Policy.from_dict({"defaults": {"evaluation": {"sets": ["golden"], "set_min_rows": [["golden", 5]]}}})


def test_the_autopilots_policy_is_the_reference_policy_with_drift_warning():
    """Two shipped files, one difference (projects/autopilot_policy.yaml says why): a rule
    changed in one and not the other would be a silent fork."""
    projects = Path(__file__).resolve().parents[2] / "projects"
    loop = Policy.load(projects / "autopilot_policy.yaml").default.to_dict()
    reference = Policy.load(projects / "road_scenes_policy.yaml").default.to_dict()
    assert loop["drift"].pop("mode") == "warn" and reference["drift"].pop("mode") == "block"
    assert loop == reference

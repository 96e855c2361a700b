"""The synthetic road-scenes data: determinism, mixes, degradation, stored versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from projects import scenes
from projects.datasets import DataError, content_hash

REPO = Path(__file__).resolve().parents[2]

# Every class and condition equally often, so each slice has enough rows to compare.
BALANCED = scenes.Mix(
    name="balanced",
    classes={c: 1 / len(scenes.CLASS_NAMES) for c in scenes.CLASS_NAMES},
    weather={w: 1 / 3 for w in scenes.WEATHERS},
    light={"day": 0.5, "night": 0.5},
)


@pytest.fixture(scope="module")
def balanced() -> pd.DataFrame:
    return scenes.generate(1200, BALANCED, seed=5)


def test_same_seed_same_table_other_seed_or_mix_differs():
    first = scenes.generate(300, "summer", seed=1)
    again = scenes.generate(300, "summer", seed=1)
    assert content_hash(first) == content_hash(again)
    pd.testing.assert_frame_equal(first, again)
    other_seed = scenes.generate(300, "summer", seed=2)
    other_mix = scenes.generate(300, "rainy_season", seed=1)
    assert content_hash(other_seed) != content_hash(first)
    assert content_hash(other_mix) != content_hash(first)
    # not just different ids: the pixels themselves differ
    assert not np.array_equal(scenes.pixels(first), scenes.pixels(other_seed))


def test_table_layout(balanced):
    df = balanced
    assert list(df.columns) == scenes.COLUMNS
    assert len(scenes.PIXEL_COLUMNS) == 3 * 32 * 32
    assert (df[scenes.PIXEL_COLUMNS].dtypes == np.uint8).all()
    assert df["label"].dtype == np.int64
    assert df["row_id"].is_unique and df["row_id"].str.startswith("balanced-5-").all()
    assert (df["label_name"] == np.asarray(scenes.CLASS_NAMES)[df["label"]]).all()
    assert set(df["weather"]) == set(scenes.WEATHERS) and set(df["light"]) == set(scenes.LIGHTS)
    summary = df[scenes.SUMMARY_COLUMNS].to_numpy()
    assert summary.dtype == np.float32 and (summary >= 0).all() and (summary <= 1).all()
    # the summary columns describe the pixels they sit next to
    np.testing.assert_allclose(summary, scenes.summary_features(scenes.pixels(df)), atol=1e-6)
    hwc = scenes.images(df.head(3))
    assert hwc.shape == (3, 32, 32, 3)
    assert hwc[0, 5, 7, 1] == df.loc[0, f"px_{1 * 1024 + 5 * 32 + 7}"]  # channel-major layout
    # images are not blank: every one has some structure
    assert (df["img_contrast"] > 0.01).all()


@pytest.mark.parametrize(
    ("mix", "column", "value", "share"),
    [
        ("summer", "weather", "rain", 0.05),
        ("summer", "weather", "fog", 0.05),
        ("summer", "light", "night", 0.25),
        ("summer", "label_name", "green_cone", 0.03),
        ("rainy_season", "weather", "rain", 0.35),
        ("augmented", "weather", "rain", 0.35),
        ("augmented", "label_name", "green_cone", 0.18),
    ],
)
def test_mix_frequencies(mix, column, value, share):
    df = scenes.generate(2000, mix, seed=3)
    assert (df[column] == value).mean() == pytest.approx(share, abs=0.005)


def test_augmented_mix_has_rainy_season_conditions_and_more_green_cones():
    summer, rainy, augmented = scenes.MIXES["summer"], scenes.MIXES["rainy_season"], scenes.MIXES["augmented"]
    assert augmented.weather["rain"] >= 5 * summer.weather["rain"]
    assert augmented.classes["green_cone"] >= 5 * summer.classes["green_cone"]
    assert augmented.weather == rainy.weather and augmented.light == rainy.light
    # declarative: a mix survives a round trip through its manifest form
    assert scenes.Mix.from_dict(json.loads(json.dumps(augmented.to_dict()))) == augmented


def test_bad_mixes_and_arguments_are_rejected():
    with pytest.raises(ValueError, match="sum to"):
        scenes.Mix("x", {"orange_cone": 0.5}, {"clear": 1.0}, {"day": 1.0})
    with pytest.raises(ValueError, match="unknown classes"):
        scenes.Mix("x", {"truck": 1.0}, {"clear": 1.0}, {"day": 1.0})
    with pytest.raises(ValueError, match="unknown mix"):
        scenes.generate(10, "winter", seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        scenes.generate(-1, "summer", seed=0)


def _slice(df, weather, light):
    return df[(df["weather"] == weather) & (df["light"] == light)]


def test_rain_fog_and_night_degrade_the_images(balanced):
    clear_day = _slice(balanced, "clear", "day")[scenes.SUMMARY_COLUMNS].mean()
    rain_day = _slice(balanced, "rain", "day")[scenes.SUMMARY_COLUMNS].mean()
    fog_day = _slice(balanced, "fog", "day")[scenes.SUMMARY_COLUMNS].mean()
    clear_night = _slice(balanced, "clear", "night")[scenes.SUMMARY_COLUMNS].mean()
    # lower contrast under every bad condition
    for degraded in (rain_day, fog_day, clear_night):
        assert degraded["img_contrast"] < 0.7 * clear_day["img_contrast"]
    assert fog_day["img_sharpness"] < 0.7 * clear_day["img_sharpness"]  # blurred
    assert fog_day["img_saturation"] < 0.7 * clear_day["img_saturation"]  # washed out to grey
    assert clear_night["img_brightness"] < 0.5 * clear_day["img_brightness"]
    assert clear_night["img_saturation"] < 0.5 * clear_day["img_saturation"]


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random ``pos`` scores above a random ``neg`` (Mann-Whitney)."""
    ranks = np.concatenate([pos, neg]).argsort().argsort() + 1
    return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def test_green_and_orange_cones_become_confusable_in_the_dark_and_rain():
    cones = scenes.Mix(
        "cones",
        {"orange_cone": 0.5, "green_cone": 0.5},
        {"clear": 0.5, "rain": 0.5},
        {"day": 0.5, "night": 0.5},
    )
    df = scenes.generate(1200, cones, seed=3)
    rgb = scenes.pixels(df).reshape(len(df), 3, -1).astype(np.float32)
    redness = (rgb[:, 0] - rgb[:, 1]).max(axis=1)  # an orange cone is the reddest thing in view

    def separability(weather, light):
        rows = ((df["weather"] == weather) & (df["light"] == light)).to_numpy()
        return _auc(redness[rows & (df["label"] == 0).to_numpy()], redness[rows & (df["label"] == 1).to_numpy()])

    clear_day, clear_night, rain_night = separability("clear", "day"), separability("clear", "night"), separability("rain", "night")
    assert clear_day > 0.9
    assert clear_night < clear_day - 0.05
    assert rain_night < clear_day - 0.2


def test_save_and_load_version(tmp_path):
    df = scenes.generate(200, "rainy_season", seed=4)
    path, manifest = scenes.save_version(df, tmp_path / "versions")
    digest = content_hash(df)
    assert path == tmp_path / "versions" / digest and manifest["content_hash"] == digest
    assert sorted(p.name for p in path.iterdir()) == [scenes.DATA_FILE, scenes.MANIFEST_FILE]
    assert manifest["mix"]["name"] == "rainy_season" and manifest["seed"] == 4 and manifest["n"] == 200
    assert manifest["counts"]["weather"]["rain"] == (df["weather"] == "rain").sum() == 70
    assert sum(manifest["counts"]["classes"].values()) == 200
    assert json.loads((path / scenes.MANIFEST_FILE).read_text()) == manifest

    loaded, loaded_manifest = scenes.load_version(path)
    pd.testing.assert_frame_equal(loaded, df)  # Parquet keeps every dtype, so the hash holds
    assert loaded_manifest == manifest
    assert scenes.load_version(path / scenes.DATA_FILE)[1] == manifest
    assert scenes.save_version(loaded, tmp_path / "versions") == (path, manifest)  # idempotent

    tampered = df.copy()
    tampered.loc[0, "px_0"] = np.uint8(tampered.loc[0, "px_0"] ^ 1)
    tampered.to_parquet(path / scenes.DATA_FILE, index=False)
    with pytest.raises(DataError, match="content hash mismatch"):
        scenes.load_version(path)
    assert len(scenes.load_version(path, verify=False)[0]) == 200
    with pytest.raises(DataError, match="not a data-set version"):
        scenes.load_version(tmp_path / "nowhere")


def test_generate_cli_writes_a_version(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "projects.scenes", "--n", "40", "--mix", "augmented", "--seed", "9", "--out", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert Path(out["data"]).is_file() and out["n"] == 40 and out["mix"]["name"] == "augmented"
    assert content_hash(pd.read_parquet(out["data"])) == out["content_hash"]
    bad = subprocess.run(
        [sys.executable, "-m", "projects.scenes", "--n", "40", "--mix", "winter", "--out", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "argument --mix: unknown mix 'winter'" in bad.stderr

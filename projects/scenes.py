"""Synthetic road scenes: the reference task's data, generated with numpy from a seed.

Every row is one 32x32 RGB image with a single object to recognise (``CLASS_NAMES``), rendered
under a weather (clear, rain, fog) and a light (day, night) condition. Rain (streaks, sensor
noise, washed-out contrast), fog (blend to grey that thickens with distance, blur) and night
(dark, desaturated, sodium-lamp tint that pulls green towards orange) really degrade the
pixels, so a model trained mostly on clear days does worse on those slices.

How often classes and conditions occur is a :class:`Mix`, plain data (``MIXES``): ``summer`` is
what the fleet sees most of the year, ``rainy_season`` is the drifted world, ``augmented`` is the
summer mix with many more rain and green-cone examples (the team's fix).

Table layout (``generate``), one row per image, columns in this order:

* ``row_id`` (str, ``<mix>-<seed>-<index>``), ``label`` (int64, index into ``CLASS_NAMES``),
  ``label_name``, ``weather``, ``light`` -- ``META_COLUMNS``;
* ``img_brightness``, ``img_contrast``, ``img_saturation``, ``img_sharpness``, ``img_mean_r``,
  ``img_mean_g``, ``img_mean_b`` (float32, 0..1) -- ``SUMMARY_COLUMNS``: cheap per-image
  statistics computed from the final pixels. A drift report on 3072 pixel columns says nothing;
  on these few columns it shows "darker, greyer, blurrier" at a glance;
* ``px_0`` .. ``px_3071`` (uint8) -- ``PIXEL_COLUMNS``, the image flattened channel-major (CHW,
  ``px_{c*1024 + y*32 + x}``), so ``pixels.reshape(-1, 3, 32, 32)`` is a torch batch.

Why flattened pixel columns rather than one binary column: the MLflow PyTorch flavour feeds a
numeric array to the model (a binary column cannot become a tensor), Parquet stores uint8
columns compactly and reads them back as one uint8 block, and ``content_hash`` hashes them
vectorised (about 2 s for 100k rows).

Data-set versions live on disk as ``<root>/<content hash>/data.parquet`` + ``manifest.json``
(``save_version`` / ``load_version``); ``python -m projects.scenes --n 20000 --mix summer
--seed 0 --out data/scenes`` (the ``scenes`` entry point) writes one and prints its manifest.
Every job takes a version directory wherever it takes a table (``projects.datasets.local_path``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from projects.cli_types import integer_at_least
from projects.datasets import DATA_FILE, MANIFEST_FILE, DataError, content_hash, version_data_path
from projects.scene_render import CHANNELS, IMAGE_SIZE, render

GENERATOR_VERSION = "1"
N_PIXELS = CHANNELS * IMAGE_SIZE * IMAGE_SIZE

CLASS_NAMES = ("orange_cone", "green_cone", "pedestrian", "nothing")
WEATHERS = ("clear", "rain", "fog")
LIGHTS = ("day", "night")

META_COLUMNS = ["row_id", "label", "label_name", "weather", "light"]
SUMMARY_COLUMNS = [
    "img_brightness",
    "img_contrast",
    "img_saturation",
    "img_sharpness",
    "img_mean_r",
    "img_mean_g",
    "img_mean_b",
]
PIXEL_COLUMNS = [f"px_{i}" for i in range(N_PIXELS)]
COLUMNS = META_COLUMNS + SUMMARY_COLUMNS + PIXEL_COLUMNS

_CHUNK = 1024  # images rendered at once: bounds memory (about 50 MB of float32 per buffer)


# --------------------------------------------------------------------------------------------
# Mixes


@dataclass(frozen=True, eq=True)
class Mix:
    """Frequencies of classes and conditions, drawn independently of each other.

    Each mapping gives a probability per value; values left out have probability 0. Counts are
    allocated exactly (largest remainder) and shuffled, so a mix of n rows holds
    ``round(p * n)`` rows of each value, not a binomial draw around it.
    """

    name: str
    classes: Mapping[str, float]
    weather: Mapping[str, float]
    light: Mapping[str, float]
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a mix needs a non-empty name")
        for attr, allowed in (("classes", CLASS_NAMES), ("weather", WEATHERS), ("light", LIGHTS)):
            probs = dict(getattr(self, attr))
            unknown = set(probs) - set(allowed)
            if unknown:
                raise ValueError(f"mix {self.name!r}: unknown {attr} {sorted(unknown)}; known: {list(allowed)}")
            if any(not np.isfinite(p) or p < 0 for p in probs.values()):
                raise ValueError(f"mix {self.name!r}: {attr} probabilities must be finite and >= 0")
            total = sum(probs.values())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"mix {self.name!r}: {attr} probabilities sum to {total:g}, not 1")
            object.__setattr__(self, attr, {key: float(probs.get(key, 0.0)) for key in allowed})

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "classes": dict(self.classes),
            "weather": dict(self.weather),
            "light": dict(self.light),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Mix:
        return cls(
            name=data["name"],
            classes=data["classes"],
            weather=data["weather"],
            light=data["light"],
            description=data.get("description", ""),
        )


_SUMMER_CLASSES = {"orange_cone": 0.32, "green_cone": 0.03, "pedestrian": 0.32, "nothing": 0.33}

MIXES: dict[str, Mix] = {
    mix.name: mix
    for mix in (
        Mix(
            name="summer",
            description="Most of the year: dry, 5% rain, 5% fog, a quarter at night, 3% green cones.",
            classes=_SUMMER_CLASSES,
            weather={"clear": 0.90, "rain": 0.05, "fog": 0.05},
            light={"day": 0.75, "night": 0.25},
        ),
        Mix(
            name="rainy_season",
            description="The drifted world: 35% rain, more fog, longer nights; same objects.",
            classes=_SUMMER_CLASSES,
            weather={"clear": 0.55, "rain": 0.35, "fog": 0.10},
            light={"day": 0.70, "night": 0.30},
        ),
        Mix(
            name="augmented",
            description="The fix: conditions as in the rainy season, and many more green-cone examples.",
            classes={"orange_cone": 0.27, "green_cone": 0.18, "pedestrian": 0.27, "nothing": 0.28},
            weather={"clear": 0.55, "rain": 0.35, "fog": 0.10},
            light={"day": 0.70, "night": 0.30},
        ),
    )
}


_PIXEL_SET = frozenset(PIXEL_COLUMNS)


def get_mix(mix: str | Mix | Mapping) -> Mix:
    """A ``Mix`` from a name in ``MIXES``, a ``Mix``, or its ``to_dict()`` form."""
    if isinstance(mix, Mix):
        return mix
    if isinstance(mix, Mapping):
        return Mix.from_dict(mix)
    try:
        return MIXES[mix]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mix {mix!r}; known: {sorted(MIXES)}") from None


def _quota(rng: np.random.Generator, probs: Mapping[str, float], values: tuple, n: int) -> np.ndarray:
    """Exactly ``round(p * n)`` (largest remainder) indices per value, in random order."""
    p = np.array([probs[v] for v in values], dtype=np.float64)
    raw = p * n
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    if short:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return rng.permutation(np.repeat(np.arange(len(values)), counts))


# --------------------------------------------------------------------------------------------
# Rendering: everything on (b, 3, 32, 32) float32 arrays in 0..1 (channel-first: broadcasting a
# colour over a 32x32 plane is far faster than over a trailing axis of 3), parameters (b,)

def summary_features(chw: np.ndarray) -> np.ndarray:
    """(n, 3072) uint8 pixels (CHW) -> (n, 7) float32 in ``SUMMARY_COLUMNS`` order, all in 0..1."""
    # float64, so the float32 results do not depend on how rows were batched
    img = chw.reshape(len(chw), CHANNELS, IMAGE_SIZE * IMAGE_SIZE).astype(np.float64) / 255.0
    r, g, b = img[:, 0], img[:, 1], img[:, 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    saturation = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    grid = luma.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    sharp = 0.5 * (np.abs(np.diff(grid, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(grid, axis=2)).mean(axis=(1, 2)))
    return np.column_stack(
        [luma.mean(axis=1), luma.std(axis=1), saturation.mean(axis=1), sharp, img.mean(axis=2)]
    ).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Public API


def generate(n: int, mix: str | Mix | Mapping = "summer", seed: int = 0) -> pd.DataFrame:
    """``n`` road scenes drawn from ``mix``; the same (n, mix, seed) always gives the same table.

    Columns are ``COLUMNS`` (see the module docstring). ``df.attrs["scenes"]`` records the
    generator version, mix and seed for ``save_version``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    mix = get_mix(mix)
    n, seed = int(n), int(seed)
    rng = np.random.default_rng([seed, int(GENERATOR_VERSION)])
    labels = _quota(rng, mix.classes, CLASS_NAMES, n)
    weather = _quota(rng, mix.weather, WEATHERS, n)
    light = _quota(rng, mix.light, LIGHTS, n)

    pixels = np.empty((n, N_PIXELS), np.uint8)
    summary = np.empty((n, len(SUMMARY_COLUMNS)), np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        chw = render(rng, labels[start:stop], weather[start:stop], light[start:stop])
        pixels[start:stop] = chw.reshape(stop - start, N_PIXELS)
        summary[start:stop] = summary_features(pixels[start:stop])

    width = max(6, len(str(max(n - 1, 0))))
    meta = pd.DataFrame(
        {
            "row_id": [f"{mix.name}-{seed}-{i:0{width}d}" for i in range(n)],
            "label": labels.astype(np.int64),
            "label_name": np.asarray(CLASS_NAMES, dtype=object)[labels],
            "weather": np.asarray(WEATHERS, dtype=object)[weather],
            "light": np.asarray(LIGHTS, dtype=object)[light],
        }
    )
    df = pd.concat(
        [
            meta,
            pd.DataFrame(summary, columns=SUMMARY_COLUMNS),
            pd.DataFrame(pixels, columns=PIXEL_COLUMNS, copy=False),
        ],
        axis=1,
    )
    df.attrs["scenes"] = {"generator_version": GENERATOR_VERSION, "mix": mix.to_dict(), "seed": seed, "n": n}
    return df


def pixels(df: pd.DataFrame) -> np.ndarray:
    """The (n, 3072) uint8 pixel matrix, the model's input, in ``PIXEL_COLUMNS`` order."""
    missing = [c for c in PIXEL_COLUMNS[:1] + PIXEL_COLUMNS[-1:] if c not in df.columns]
    if missing:
        raise DataError(f"the table has no pixel columns ({missing[0]} missing): not a scenes table")
    return df[PIXEL_COLUMNS].to_numpy(dtype=np.uint8)


def images(df: pd.DataFrame) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images, for looking at them."""
    return pixels(df).reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)


def validate(df: pd.DataFrame) -> None:
    """Raise ``DataError`` unless ``df`` has the scenes columns with usable values."""
    missing = [c for c in META_COLUMNS + PIXEL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"not a scenes table: missing {len(missing)} columns, e.g. {missing[:3]}")
    if len(df) == 0:
        raise DataError("the table has no rows")
    bad = ~df["label"].isin(range(len(CLASS_NAMES)))
    if bad.any():
        raise DataError(f"{int(bad.sum())} rows have a label outside 0..{len(CLASS_NAMES) - 1}")


def counts(df: pd.DataFrame) -> dict:
    """Rows per class, weather, light and weather x light, as plain dicts (for manifests)."""
    return {
        "classes": {name: int((df["label_name"] == name).sum()) for name in CLASS_NAMES},
        "weather": {w: int((df["weather"] == w).sum()) for w in WEATHERS},
        "light": {li: int((df["light"] == li).sum()) for li in LIGHTS},
        "weather_light": {
            f"{w}/{li}": int(((df["weather"] == w) & (df["light"] == li)).sum()) for w in WEATHERS for li in LIGHTS
        },
    }


def save_version(df: pd.DataFrame, root: str | os.PathLike, *, mix: str | Mix | None = None, seed: int | None = None) -> tuple[Path, dict]:
    """Store ``df`` as ``<root>/<content hash>/data.parquet`` + ``manifest.json``.

    Idempotent: a version that already exists is left as it is. ``mix`` and ``seed`` default to
    what ``generate`` recorded in ``df.attrs`` (None for tables it did not make). Returns the
    version directory and the manifest.
    """
    validate(df)
    digest = content_hash(df)
    info = df.attrs.get("scenes", {})
    if mix is not None:
        mix_info = get_mix(mix).to_dict()
    else:
        mix_info = info.get("mix")
    manifest = {
        "content_hash": digest,
        "n": len(df),
        "mix": mix_info,
        "seed": seed if seed is not None else info.get("seed"),
        "generator_version": info.get("generator_version", GENERATOR_VERSION),
        "data_file": DATA_FILE,
        "image": {"height": IMAGE_SIZE, "width": IMAGE_SIZE, "channels": CHANNELS, "layout": "CHW", "dtype": "uint8"},
        "class_names": list(CLASS_NAMES),
        "counts": counts(df),
    }
    root = Path(root)
    target = root / digest
    if (target / MANIFEST_FILE).exists():
        return target, json.loads((target / MANIFEST_FILE).read_text())
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
    try:
        write_parquet(df, staging / DATA_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.replace(staging, target)  # atomic; fails if another writer got there first
        except OSError:
            if not (target / MANIFEST_FILE).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, manifest


def parquet_options(columns) -> dict:
    """How scenes tables are written (pandas ``to_parquet`` / pyarrow ``write_table`` options).

    Row groups of 10k rows: readers batch by row group, so memory stays bounded (one group of a
    million-row table would be ~3 GB of pixels decoded at once) and small groups can be
    pre-buffered. Pixel columns uncompressed: noise-like pixels do not shrink under snappy
    (140 MB either way for 40k rows) and skipping decompression makes reading them 27 % cheaper.
    """
    return {"row_group_size": 10_000, "compression": {c: "none" if c in _PIXEL_SET else "snappy" for c in columns}}


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    df.to_parquet(path, index=False, **parquet_options(df.columns))


def load_version(path: str | os.PathLike, *, verify: bool = True) -> tuple[pd.DataFrame, dict]:
    """Read a version written by ``save_version`` (directory, manifest or data file).

    With ``verify`` (default) the table's content hash must match the manifest, so a tampered or
    half-written version raises ``DataError`` instead of being trained or evaluated on.
    """
    data_path = version_data_path(path)
    manifest_path = data_path.parent / MANIFEST_FILE
    if not data_path.exists() or not manifest_path.exists():
        raise DataError(f"not a data-set version (need {DATA_FILE} and {MANIFEST_FILE}): {path}")
    manifest = json.loads(manifest_path.read_text())
    try:
        df = pd.read_parquet(data_path)
    except Exception as exc:
        raise DataError(f"cannot read {data_path}: {exc}") from exc
    if verify:
        digest = content_hash(df)
        if digest != manifest.get("content_hash"):
            raise DataError(
                f"content hash mismatch for {data_path}: manifest says {manifest.get('content_hash')}, data hashes to {digest}"
            )
    if manifest.get("mix"):
        df.attrs["scenes"] = {k: manifest.get(k) for k in ("generator_version", "mix", "seed", "n")}
    return df, manifest


def training_version(data_dir: str | os.PathLike, mix: str = "summer", n: int = 8000, seed: int = 0) -> tuple[Path, dict]:
    """The training set ``retrain`` builds, in ``<data_dir>/train``: ``tune`` uses the same one when
    given no data, so with equal arguments both work on one data-set version (content-addressed:
    built again, it is found, not duplicated)."""
    return save_version(generate(n, mix, seed), Path(data_dir) / "train")


def mix_name(text: str) -> str:
    """An argparse type: the name of a mix in ``MIXES``."""
    if text not in MIXES:
        raise argparse.ArgumentTypeError(f"unknown mix {text!r}; known: {', '.join(sorted(MIXES))}")
    return text


def _record_in_project_run(manifest: dict) -> None:
    """Under ``mlflow run`` (``MLFLOW_RUN_ID``), the project's run says which version it wrote: the
    manifest as ``data/manifest.json`` and the ``gatekeeper.dataset.version`` tag. Nothing else is
    logged there (its params are the command line's); run alone, this logs nothing."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    from mlflow import MlflowClient

    from registry_hooks.contract import TAG_DATASET_VERSION

    client = MlflowClient()
    client.log_dict(run_id, manifest, "data/manifest.json")
    client.set_tag(run_id, TAG_DATASET_VERSION, manifest["content_hash"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projects.scenes", description="Generate and store a road-scenes data-set version.")
    parser.add_argument("--n", type=integer_at_least(1), required=True, help="number of images")
    parser.add_argument("--mix", type=mix_name, default="summer", help=f"one of {sorted(MIXES)} (default summer)")
    parser.add_argument("--seed", type=integer_at_least(0), default=0)
    parser.add_argument("--out", required=True, help="root directory of data-set versions")
    args = parser.parse_args(argv)
    path, manifest = save_version(generate(args.n, args.mix, args.seed), args.out)
    _record_in_project_run(manifest)
    print(json.dumps({"path": str(path), "data": str(path / DATA_FILE), **manifest}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

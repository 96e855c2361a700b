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
--seed 0 --out data/scenes`` writes one and prints its manifest.
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

from projects.datasets import DataError, content_hash

GENERATOR_VERSION = "1"
IMAGE_SIZE = 32
CHANNELS = 3
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

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"

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

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + np.float32(0.5)


def _luma(img: np.ndarray) -> np.ndarray:
    """(b, 3, ...) -> (b, ...) Rec. 601 luma."""
    return np.float32(0.299) * img[:, 0] + np.float32(0.587) * img[:, 1] + np.float32(0.114) * img[:, 2]


def _col(values: np.ndarray) -> np.ndarray:
    """(b,) -> (b, 1, 1) for broadcasting against the pixel grid (a scalar -> (1, 1, 1))."""
    return np.atleast_1d(np.asarray(values, dtype=np.float32))[:, None, None]


def _per_image(values) -> np.ndarray:
    """(b,) -> (b, 1, 1, 1) for broadcasting against a batch of images."""
    return np.atleast_1d(np.asarray(values, dtype=np.float32))[:, None, None, None]


def _rgb(colors) -> np.ndarray:
    """(k, 3) or (3,) colours -> (k, 3, 1, 1) or (3, 1, 1)."""
    return np.asarray(colors, dtype=np.float32)[..., None, None]


def _coverage(dist: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return np.clip(np.float32(0.5) - dist, 0.0, 1.0)


def _rect(cx, cy, hw, hh) -> np.ndarray:
    return _coverage(np.maximum(np.abs(_XX - _col(cx)) - _col(hw), np.abs(_YY - _col(cy)) - _col(hh)))


def _ellipse(cx, cy, rx, ry) -> np.ndarray:
    rx, ry = _col(rx), _col(ry)
    norm = np.sqrt(((_XX - _col(cx)) / rx) ** 2 + ((_YY - _col(cy)) / ry) ** 2)
    return _coverage((norm - 1.0) * np.minimum(rx, ry))


def _trapezoid(cx, top, bottom, top_hw, bottom_hw) -> np.ndarray:
    """Upright trapezoid (a cone's body): half-width grows linearly from top to bottom."""
    top, bottom = _col(top), _col(bottom)
    t = np.clip((_YY - top) / np.maximum(bottom - top, 1e-3), 0.0, 1.0)
    half = _col(top_hw) + t * (_col(bottom_hw) - _col(top_hw))
    dist = np.maximum(np.abs(_XX - _col(cx)) - half, np.maximum(top - _YY, _YY - bottom))
    return _coverage(dist)


def _paint(sub: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """In place: blend ``color`` (k, 3) into images ``sub`` (k, 3, 32, 32) with coverage ``mask``."""
    sub += mask[:, None] * (_rgb(color) - sub)


def _blur(img: np.ndarray) -> np.ndarray:
    """3x3 box blur with edge padding, vectorised over the batch."""
    pad = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    out = np.zeros_like(img)
    for dy in range(3):
        for dx in range(3):
            out += pad[:, :, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE]
    return out / np.float32(9.0)


def _noise(rng: np.random.Generator, shape: tuple, sigma: float) -> np.ndarray:
    """Zero-mean uniform noise with standard deviation ``sigma`` (10x cheaper than normals)."""
    noise = rng.random(shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(sigma * np.sqrt(12.0))
    return noise


def _jitter(rng: np.random.Generator, base, spread: float, k: int) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.uniform(-spread, spread, (k, 3)).astype(np.float32), 0, 1)


def _background(rng: np.random.Generator, b: int, horizon: np.ndarray) -> np.ndarray:
    """Sky above the horizon; grass with a road (or a wide paved area) below."""
    hz = _col(horizon)
    img = np.empty((b, CHANNELS, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    # Sky: blue to pale towards the horizon, some overcast (greyer) skies.
    top = _jitter(rng, (0.32, 0.52, 0.85), 0.08, b)
    low = _jitter(rng, (0.72, 0.80, 0.90), 0.06, b)
    overcast = rng.uniform(0.0, 0.7, b).astype(np.float32)[:, None]
    grey = rng.uniform(0.55, 0.8, (b, 1)).astype(np.float32)
    top, low = top + overcast * (grey - top), low + overcast * (grey - low)
    t = np.clip(_YY / hz, 0, 1)[:, None]
    img[:] = _rgb(top) + t * _rgb(low - top)
    # Ground: grass with blotchy texture.
    grass = _jitter(rng, (0.28, 0.50, 0.20), 0.08, b)
    tex = _blur(_noise(rng, (b, 1, IMAGE_SIZE, IMAGE_SIZE), 0.08))
    ground = (_YY >= hz)[:, None]
    img = np.where(ground, _rgb(grass) + tex, img)
    # Road: a trapezoid from a vanishing point near the horizon; sometimes fills the ground.
    road_cx = rng.uniform(8, 24, b)
    top_hw = rng.uniform(1, 4, b)
    bottom_hw = np.where(rng.random(b) < 0.2, 40.0, rng.uniform(8, 18, b))
    road = _trapezoid(road_cx, horizon, IMAGE_SIZE + 1, top_hw, bottom_hw) * ground[:, 0]
    asphalt = np.repeat(rng.uniform(0.33, 0.55, (b, 1)), 3, axis=1) + rng.uniform(-0.03, 0.03, (b, 3))
    road_tex = _rgb(asphalt) + tex * np.float32(0.5)
    img += road[:, None] * (road_tex - img)
    # Dashed lane marking along the road axis, white or yellow.
    depth = np.clip((_YY - hz) / np.maximum(IMAGE_SIZE - hz, 1), 0, 1)
    axis_x = _col(road_cx) + depth * _col(rng.uniform(-6, 6, b))
    dashed = (np.sin(_YY * 1.3 / (0.25 + depth) + _col(rng.uniform(0, 6.28, b))) > 0).astype(np.float32)
    lane = _coverage(np.abs(_XX - axis_x) - (0.15 + 0.6 * depth)) * dashed * ground[:, 0]
    lane *= _col(rng.random(b) < 0.7)
    lane_color = np.where(rng.random((b, 1)) < 0.75, [[0.9, 0.9, 0.88]], [[0.92, 0.8, 0.25]])
    img += lane[:, None] * (_rgb(lane_color) - img)
    return img


def _ground_object(rng: np.random.Generator, k: int, horizon: np.ndarray, h_range: tuple[float, float]):
    """Base position and perspective-scaled height of k objects standing on the ground."""
    base = horizon + rng.uniform(0.15, 1.0, k) * (IMAGE_SIZE + 1 - horizon)
    depth = np.clip((base - horizon) / (IMAGE_SIZE - horizon), 0, 1)
    height = (h_range[0] + depth * (h_range[1] - h_range[0])) * rng.uniform(0.85, 1.15, k)
    cx = rng.uniform(4, IMAGE_SIZE - 4, k)
    return cx, np.minimum(base, IMAGE_SIZE + 0.5), height


def _draw_distractors(rng: np.random.Generator, img: np.ndarray, horizon: np.ndarray) -> None:
    """Up to three things that are not the object: bushes, cars, posts, road-works signs."""
    b = len(img)
    for _slot in range(3):
        kind = rng.choice(5, size=b, p=[0.35, 0.2, 0.2, 0.15, 0.1])  # 0 none, 1 bush, 2 car, 3 post, 4 sign
        # Bushes: green (sometimes lime) blobs on the verge near the horizon.
        idx = np.flatnonzero(kind == 1)
        k = len(idx)
        if k:
            cx = rng.uniform(0, IMAGE_SIZE, k)
            cy = horizon[idx] + rng.uniform(-1, 4, k)
            mask = _ellipse(cx, cy, rng.uniform(2, 5, k), rng.uniform(1.5, 4, k))
            lime = rng.random(k) < 0.3
            color = np.where(lime[:, None], _jitter(rng, (0.45, 0.75, 0.2), 0.08, k), _jitter(rng, (0.12, 0.35, 0.1), 0.06, k))
            sub = img[idx]
            _paint(sub, mask, color)
            img[idx] = sub
        # Cars: boxes of any colour (orange and green included) with dark windows.
        idx = np.flatnonzero(kind == 2)
        k = len(idx)
        if k:
            cx, base, h = _ground_object(rng, k, horizon[idx], (2.0, 9.0))
            hw = h * rng.uniform(0.9, 1.4, k)
            color = rng.uniform(0.05, 0.95, (k, 3)).astype(np.float32)
            sub = img[idx]
            _paint(sub, _rect(cx, base - h / 2, hw, h / 2), color)
            _paint(sub, _rect(cx, base - h * 0.75, hw * 0.7, h * 0.15), np.full((k, 3), 0.12, np.float32))
            img[idx] = sub
        # Posts: thin vertical bars, pedestrian-sized.
        idx = np.flatnonzero(kind == 3)
        k = len(idx)
        if k:
            cx, base, h = _ground_object(rng, k, horizon[idx], (5.0, 22.0))
            color = np.repeat(rng.uniform(0.3, 0.95, (k, 1)), 3, axis=1).astype(np.float32)
            sub = img[idx]
            _paint(sub, _rect(cx, base - h / 2, np.maximum(h * 0.06, 0.4), h / 2), color)
            img[idx] = sub
        # Road-works signs: orange or yellow diamonds on a post -- cone-coloured, not a cone.
        idx = np.flatnonzero(kind == 4)
        k = len(idx)
        if k:
            cx, base, h = _ground_object(rng, k, horizon[idx], (5.0, 16.0))
            sub = img[idx]
            _paint(sub, _rect(cx, base - h / 2, np.full(k, 0.4), h / 2), np.full((k, 3), 0.4, np.float32))
            r = h * 0.3
            diamond = _coverage((np.abs(_XX - _col(cx)) + np.abs(_YY - _col(base - h + r))) / np.sqrt(2) - _col(r) / np.sqrt(2))
            color = np.where(rng.random((k, 1)) < 0.6, [[1.0, 0.5, 0.1]], [[0.95, 0.85, 0.15]]).astype(np.float32)
            _paint(sub, diamond, color)
            img[idx] = sub


def _draw_cones(rng: np.random.Generator, img: np.ndarray, idx: np.ndarray, horizon: np.ndarray, green: bool) -> None:
    k = len(idx)
    if not k:
        return
    cx, base, h = _ground_object(rng, k, horizon[idx], (4.5, 16.0))
    top = base - h
    bottom_hw = h * rng.uniform(0.28, 0.38, k)
    top_hw = np.maximum(h * 0.06, 0.35)
    if green:  # fluorescent lime-green cones, a little yellowish
        color = _jitter(rng, (0.42, 0.86, 0.16), 0.08, k)
    else:
        color = _jitter(rng, (1.0, 0.42, 0.08), 0.07, k)
    sub = img[idx]
    _paint(sub, _trapezoid(cx, top, base - h * 0.1, top_hw, bottom_hw), color)
    # Reflective white band and a dark base plate.
    band = _trapezoid(cx, top + h * 0.38, top + h * 0.56, bottom_hw * 0.45, bottom_hw * 0.62)
    _paint(sub, band, _jitter(rng, (0.92, 0.92, 0.92), 0.05, k))
    _paint(sub, _rect(cx, base - h * 0.05, bottom_hw * 1.15, np.maximum(h * 0.05, 0.5)), np.full((k, 3), 0.1, np.float32))
    img[idx] = sub


_CLOTHES = np.array(
    [
        [0.15, 0.15, 0.18],  # dark
        [0.2, 0.3, 0.7],  # blue
        [0.75, 0.15, 0.15],  # red
        [1.0, 0.5, 0.1],  # hi-vis orange
        [0.45, 0.85, 0.2],  # hi-vis green
        [0.9, 0.9, 0.9],  # white
        [0.55, 0.45, 0.3],  # brown
    ],
    np.float32,
)
_SKIN = np.array([[0.95, 0.78, 0.65], [0.8, 0.6, 0.45], [0.55, 0.38, 0.26], [0.35, 0.24, 0.16]], np.float32)


def _draw_pedestrians(rng: np.random.Generator, img: np.ndarray, idx: np.ndarray, horizon: np.ndarray) -> None:
    k = len(idx)
    if not k:
        return
    cx, base, h = _ground_object(rng, k, horizon[idx], (7.0, 24.0))
    top = base - h
    stride = rng.uniform(-0.12, 0.12, k) * h  # legs apart when walking
    pants = np.clip(_CLOTHES[rng.choice([0, 1, 6], k)] * 0.8, 0, 1)
    legs = np.maximum(
        _rect(cx - h * 0.07 - stride * 0.5, top + h * 0.78, np.maximum(h * 0.05, 0.45), h * 0.22),
        _rect(cx + h * 0.07 + stride * 0.5, top + h * 0.78, np.maximum(h * 0.05, 0.45), h * 0.22),
    )
    sub = img[idx]
    _paint(sub, legs, pants)
    shirt = _CLOTHES[rng.choice(len(_CLOTHES), k)] + rng.uniform(-0.05, 0.05, (k, 3)).astype(np.float32)
    torso = np.maximum(
        _rect(cx, top + h * 0.38, h * 0.14, h * 0.2),
        _rect(cx + rng.uniform(-0.25, 0.25, k) * h * 0.3, top + h * 0.42, h * 0.22, np.maximum(h * 0.035, 0.4)),
    )
    _paint(sub, torso, np.clip(shirt, 0, 1))
    _paint(sub, _ellipse(cx, top + h * 0.1, h * 0.09, h * 0.1), _SKIN[rng.choice(len(_SKIN), k)])
    img[idx] = sub


def _rain(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Washed-out, bluish-grey, dimmer, with bright slanted streaks, lens blur and sensor noise."""
    b = len(img)
    mean = img.mean(axis=(1, 2, 3), keepdims=True)
    img = mean + (img - mean) * _per_image(rng.uniform(0.45, 0.7, b))
    cast = _rgb([0.48, 0.52, 0.58])
    img = img + _per_image(rng.uniform(0.15, 0.35, b)) * (cast - img)
    img = img * _per_image(rng.uniform(0.75, 0.9, b))
    seeds = (rng.random((b, IMAGE_SIZE, IMAGE_SIZE)) < _col(rng.uniform(0.006, 0.018, b))).astype(np.float32)
    streaks = np.zeros_like(seeds)
    slope = rng.choice(np.array([0.0, 0.25, 0.5], np.float32), b)
    for s in np.unique(slope):
        sel = np.flatnonzero(slope == s)
        acc = np.zeros((len(sel), IMAGE_SIZE, IMAGE_SIZE), np.float32)
        for step in range(5):
            acc += np.roll(seeds[sel], (step, int(round(step * s))), axis=(1, 2))
        streaks[sel] = acc
    img = img + np.minimum(streaks, 1.0)[:, None] * _per_image(rng.uniform(0.12, 0.28, b))
    img = 0.6 * img + 0.4 * _blur(img)  # water on the lens
    return img + _noise(rng, img.shape, 0.04)


def _fog(rng: np.random.Generator, img: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """Blend to grey, thicker towards the horizon (further away), then blur."""
    b = len(img)
    density = _col(rng.uniform(0.45, 0.75, b))
    near = np.clip((_YY - _col(horizon)) / (IMAGE_SIZE - _col(horizon)), 0, 1)
    alpha = (density * (1.0 - 0.35 * near))[:, None]
    fog = _per_image(rng.uniform(0.62, 0.8, b))
    img = img + alpha * (fog - img)
    img = _blur(img)
    return img + _noise(rng, img.shape, 0.02)


def _night(rng: np.random.Generator, img: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """Dark and desaturated under sodium street lamps (green drifts towards orange); the
    headlights light the near road, the distance stays dark; high-ISO sensor noise."""
    b = len(img)
    img = img * _rgb([1.0, 0.8, 0.45])
    gray = _luma(img)[:, None]
    img = gray + (img - gray) * _per_image(rng.uniform(0.25, 0.5, b))
    near = np.clip((_YY - _col(horizon)) / (IMAGE_SIZE - _col(horizon)), 0, 1)
    beam = near * np.exp(-(((_XX - _col(rng.uniform(10, 22, b))) / 14.0) ** 2))
    gain = _col(rng.uniform(0.25, 0.4, b)) + _col(rng.uniform(0.2, 0.45, b)) * beam
    return img * gain[:, None] + _noise(rng, img.shape, 0.03)


def _render(rng: np.random.Generator, labels: np.ndarray, weather: np.ndarray, light: np.ndarray) -> np.ndarray:
    """(b,) codes -> (b, 3, 32, 32) uint8 images."""
    b = len(labels)
    horizon = rng.uniform(8.0, 16.0, b)
    img = _background(rng, b, horizon)
    _draw_distractors(rng, img, horizon)
    _draw_cones(rng, img, np.flatnonzero(labels == 0), horizon, green=False)
    _draw_cones(rng, img, np.flatnonzero(labels == 1), horizon, green=True)
    _draw_pedestrians(rng, img, np.flatnonzero(labels == 2), horizon)
    img *= _per_image(rng.uniform(0.85, 1.1, b))  # exposure
    rain, fog, night = (np.flatnonzero(weather == 1), np.flatnonzero(weather == 2), np.flatnonzero(light == 1))
    if len(rain):
        img[rain] = _rain(rng, img[rain])
    if len(fog):
        img[fog] = _fog(rng, img[fog], horizon[fog])
    if len(night):
        img[night] = _night(rng, img[night], horizon[night])
    img += _noise(rng, img.shape, 0.015)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


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
        chw = _render(rng, labels[start:stop], weather[start:stop], light[start:stop])
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
        df.to_parquet(staging / DATA_FILE, index=False)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.replace(staging, target)  # atomic; fails if another writer got there first
        except OSError:
            if not (target / MANIFEST_FILE).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, manifest


def version_data_path(path: str | os.PathLike) -> Path:
    """The Parquet file of a version given its directory, manifest or data file."""
    path = Path(path)
    if path.is_dir():
        return path / DATA_FILE
    if path.name == MANIFEST_FILE:
        return path.parent / DATA_FILE
    return path


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projects.scenes", description="Generate and store a road-scenes data-set version.")
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--mix", default="summer", help=f"one of {sorted(MIXES)} (default summer)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="root directory of data-set versions")
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error(f"--n must be positive, got {args.n}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.mix not in MIXES:
        parser.error(f"--mix must be one of {sorted(MIXES)}, got {args.mix!r}")
    path, manifest = save_version(generate(args.n, args.mix, args.seed), args.out)
    print(json.dumps({"path": str(path), "data": str(path / DATA_FILE), **manifest}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Drawing the road scenes: backgrounds, cones, pedestrians, distractors, and what rain, fog and
night do to them. Vectorised over a chunk of images; the only entry point is ``render``.

Split from ``projects.scenes`` (the data set: mixes, generation, versions) because the drawing
is a job of its own and most of the lines.
"""

from __future__ import annotations

import numpy as np

IMAGE_SIZE = 32
CHANNELS = 3

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


def render(rng: np.random.Generator, labels: np.ndarray, weather: np.ndarray, light: np.ndarray) -> np.ndarray:
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


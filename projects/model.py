"""The road-scenes classifier: a small CNN whose forward pass is what MLflow's pyfunc serves.

``RoadSceneNet`` takes the raw scenes pixel matrix -- ``(n, 3072)`` uint8, the ``px_*`` columns in
order (channel-major, see ``projects.scenes``) -- and returns class probabilities ``(n, 4)`` in
``CLASS_NAMES`` order: scaling, reshaping and softmax live inside ``forward``. So the network needs
no pre- or post-processing code and is saved by ``mlflow.pytorch`` in MLflow's default ``pt2``
format (``torch.export``): a traced graph, loadable without unpickling code; ``train`` logs it
inside the serving wrapper (``projects.serving``).

Through pyfunc::

    model = mlflow.pyfunc.load_model(uri)
    out = model.predict(df[PIXEL_COLUMNS])          # bare network: (n, 4) float32; wrapper: a DataFrame
    probs = predict_proba(model, df)                 # (n, 4) from either, any columns, batched for 100k rows

Two kinds of logged model exist. Versions registered before the serving wrapper are this network
alone (``mlflow.pytorch``, tensor spec ``uint8 (-1, 3072)``, output the probability matrix); newer
ones are ``projects.serving``'s wrapper, whose output is a DataFrame with one ``p_<class>`` column
per class (and request id, prediction, confidence) and which writes each call to the inference
log. ``predict_proba`` reads both the same way (``output_probabilities``), selects the pixel
columns of a whole table, predicts in batches (one forward pass over 100k images would need
gigabytes of activations) and asks the wrapper not to log: scoring a data set is not traffic.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from projects.scenes import CHANNELS, CLASS_NAMES, IMAGE_SIZE, N_PIXELS, PIXEL_COLUMNS
from projects.served import PROBABILITY_PREFIX, probabilities, scoring_params

# Per-channel statistics of the summer mix, rounded: inputs are roughly centred at 0, unit scale.
_MEAN = (0.45, 0.47, 0.43)
_STD = (0.25, 0.25, 0.27)

PROBABILITY_COLUMNS = [f"{PROBABILITY_PREFIX}{name}" for name in CLASS_NAMES]  # the serving wrapper's output


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    ]


class RoadSceneNet(nn.Module):
    """Three conv blocks (width, 2x, 4x channels; 32 -> 4 pixels), dropout, linear head.

    ``forward`` returns probabilities (for serving), ``logits`` the raw scores (for training
    with ``cross_entropy``, numerically safer than the log of a softmax).
    """

    def __init__(self, width: int = 16, dropout: float = 0.2, n_classes: int = len(CLASS_NAMES)):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.width, self.dropout, self.n_classes = width, dropout, n_classes
        self.features = nn.Sequential(*_block(CHANNELS, width), *_block(width, 2 * width), *_block(2 * width, 4 * width))
        side = IMAGE_SIZE // 8
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width * side * side, n_classes))
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, CHANNELS, 1, 1) * 255.0, persistent=True)
        self.register_buffer("std", torch.tensor(_STD).view(1, CHANNELS, 1, 1) * 255.0, persistent=True)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3072) pixels of any numeric dtype, 0..255 -> (n, n_classes) logits."""
        x = x.reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).to(torch.float32)
        return self.head(self.features((x - self.mean) / self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def predict_proba(model, data: pd.DataFrame | np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities (n, 4) from a pyfunc model, a ``RoadSceneNet`` or anything with a
    ``predict``; ``data`` may be a whole scenes table (pixel columns are picked out) or the pixel
    matrix. Batched, so 100k rows stay within a few hundred MB."""
    if isinstance(data, pd.DataFrame):
        data = data[PIXEL_COLUMNS].to_numpy(dtype=np.uint8)
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != N_PIXELS:
        raise ValueError(f"expected (n, {N_PIXELS}) pixels, got shape {data.shape}")
    if isinstance(model, nn.Module):
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                parts = [model(torch.from_numpy(np.ascontiguousarray(chunk)).to(device)).cpu().numpy() for chunk in _chunks(data, batch_size)]
        finally:
            model.train(was_training)
    else:
        params = scoring_params(model)
        parts = [output_probabilities(model.predict(pd.DataFrame(chunk, columns=PIXEL_COLUMNS), params=params))
                 for chunk in _chunks(data, batch_size)]
    if not parts:
        return np.zeros((0, len(CLASS_NAMES)), np.float32)
    return np.concatenate(parts)


def output_probabilities(output) -> np.ndarray:
    """(n, classes) float32 probabilities from what a logged model returned: the wrapper's
    ``p_<class>`` columns (written in ``CLASS_NAMES`` order), or the bare network's matrix."""
    return np.asarray(probabilities(output), dtype=np.float32)


def _chunks(data: np.ndarray, size: int) -> Iterable[np.ndarray]:
    for start in range(0, len(data), size):
        yield data[start : start + size]

"""The reference task's world for ``-P simulate_weeks=N``: weekly traffic and a labeller.

Why a simulation inside the autopilot: the loop has to be proven end to end — traffic logged,
failures mined, labels given, data grown, a candidate judged — without people or a camera. The
scene generator plays the world: week ``w`` draws ``week_size`` scenes from the season's mix
(summer, then from ``shift_week`` on the rainy season), the current ``@champion`` scores them as
production would (a real ``mlflow models serve``, or ``mlflow.pyfunc`` in the autopilot: see
:func:`in_process`; the inference log on, the pixels kept), and their true
labels go into an answer key only the labeller reads: it answers the queue's requests from it,
after ``delay_s``, through the gate's feedback API like a person would.

The rainy season here is the scene generator's ``rainy_season`` conditions with green cones (road
works) four times as common as in summer: the shift the issue describes, where both a condition
(rain) and a rare class (green cones) become frequent at once.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from projects.scenes import MIXES, Mix
from registry_hooks.inference_records import REQUEST_ID, new_request_id

SCORING_BATCH = 256
RAINY_SEASON = Mix(
    name="rainy_season_road_works",
    description="The season's shift: the rainy season's conditions, and green cones at 12% (3% in summer).",
    classes={"orange_cone": 0.29, "green_cone": 0.12, "pedestrian": 0.29, "nothing": 0.30},
    weather=MIXES["rainy_season"].weather,
    light=MIXES["rainy_season"].light,
)


@dataclass(frozen=True)
class Season:
    weeks: int
    week_size: int = 2000
    shift_week: int = 2  # the first rainy week
    seed: int = 0

    def mix(self, week: int) -> Mix:
        return MIXES["summer"] if week < self.shift_week else RAINY_SEASON

    def scenes(self, week: int) -> pd.DataFrame:
        """Week ``week``'s traffic: the same scenes for the same season, whoever scores them."""
        from projects.scenes import generate

        return generate(self.week_size, self.mix(week), seed=self.seed * 1000 + 100 + week)


def predict(model, scenes: pd.DataFrame) -> pd.Series:
    """``model``'s (a loaded pyfunc) predicted class per scene, scored in serving-sized batches."""
    return pd.concat([model.predict(scenes.iloc[i:i + SCORING_BATCH])["prediction"]
                      for i in range(0, len(scenes), SCORING_BATCH)], ignore_index=True)


def _accuracy(truth: pd.Series, predicted: pd.Series, mask: np.ndarray) -> float | None:
    return float((truth[mask] == predicted[mask]).mean()) if mask.any() else None


def week_metrics(scenes: pd.DataFrame, predicted: pd.Series) -> dict[str, float]:
    """The champion's accuracy this week, overall and on the slices the season is about."""
    truth = scenes["label_name"].reset_index(drop=True)
    predicted = predicted.reset_index(drop=True)
    masks = {"all": np.ones(len(scenes), bool), "rain": (scenes["weather"] == "rain").to_numpy(),
             "clear": (scenes["weather"] == "clear").to_numpy(), "night": (scenes["light"] == "night").to_numpy(),
             "green_cone": (truth == "green_cone").to_numpy()}
    found = {f"accuracy_{name}": _accuracy(truth, predicted, mask) for name, mask in masks.items()}
    return {key: value for key, value in found.items() if value is not None}


def in_process(model_uri: str):
    """A scorer for :func:`traffic`: ``model_uri`` loaded with ``mlflow.pyfunc`` in this process,
    the inference log flushed before it returns (the records are then readable)."""
    import mlflow.pyfunc

    from projects import inference_log

    model = mlflow.pyfunc.load_model(model_uri)

    def score(scenes: pd.DataFrame) -> pd.Series:
        predicted = predict(model, scenes)
        writer = inference_log.writer_for(inference_log.LogConfig.from_env())
        if writer is not None and not writer.flush():
            raise RuntimeError("the inference log did not take the week's traffic in time")
        return predicted

    return score


def traffic(season: Season, week: int, score, key_dir: Path) -> dict:
    """Week ``week``'s scenes scored by ``score`` (a scene frame -> predicted classes, logging
    them as traffic: :func:`in_process` or ``serving.ScoringServer.score``); the answer key written
    to ``key_dir``. Returns the window it was logged in, the key's path and the week's accuracies."""
    scenes = season.scenes(week)
    start = dt.datetime.now(dt.timezone.utc)
    scenes[REQUEST_ID] = [new_request_id(start) for _ in range(len(scenes))]
    predicted = score(scenes)
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    key_dir.mkdir(parents=True, exist_ok=True)
    key = key_dir / f"week-{week:03d}.parquet"
    scenes[[REQUEST_ID, "label_name"]].rename(columns={"label_name": "label"}).to_parquet(key, index=False)
    return {"week": week, "mix": season.mix(week).name, "start": start.isoformat(), "end": end.isoformat(),
            "answer_key": str(key), "rows": len(scenes), **week_metrics(scenes, predicted)}


def answer(gate, model: str, queue: pd.DataFrame, key_dir: Path, delay_s: float = 0.0) -> dict:
    """Label the queue's requests from the answer keys, through the gate as `gatekeeper feedback import` does
    (batches of what the API takes, every batch checked before any is written)."""
    from gatekeeper_cli import feedback

    time.sleep(delay_s)
    keys = pd.concat([pd.read_parquet(p) for p in sorted(key_dir.glob("week-*.parquet"))], ignore_index=True)
    labels = keys.drop_duplicates(REQUEST_ID).set_index(REQUEST_ID)["label"]
    items = [{"request_id": i, "label": labels[i]} for i in queue[REQUEST_ID] if i in labels.index]
    sent = feedback.send(gate, model, items, partial=False) if items else {"created": 0, "revised": 0}
    return {"asked": len(queue), "answered": len(items), "written": sent["created"] + sent["revised"]}

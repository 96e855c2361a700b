"""Each reason picks what it should, and the queue spends the budget exactly, flags first.

Small windows built by hand: which rows each reason must pick, and in which order, is readable
from the table itself.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from projects.mine import feedback, reasons
from projects.mine.core import mine_window
from projects.mine.queue import budget_rows, build_queue, reason_counts
from projects.mine.slices import Predicate, Slice

CLASSES = ("cat", "dog", "owl")


def served(n: int, seed: int = 0, **columns) -> pd.DataFrame:
    """``n`` rows as the log holds them (request ids r0.., random probabilities), plus ``columns``."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(CLASSES)), n)
    frame = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "model_run_id": "champ",
                          "prediction": np.asarray(CLASSES)[p.argmax(axis=1)], "confidence": p.max(axis=1),
                          **{f"p_{c}": p[:, k] for k, c in enumerate(CLASSES)},
                          "weather": rng.choice(["clear", "rain"], n), "light": rng.choice(["day", "night"], n)})
    for name, values in columns.items():
        frame[name] = pd.Series(values, dtype=object) if not isinstance(values, np.ndarray) else values
    for name in ("label", "flag"):
        if name not in frame.columns:
            frame[name] = None
    return frame


def test_lowest_confidence_ranks_unlabelled_rows_least_confident_first():
    frame = served(4, confidence=np.array([0.9, 0.4, 0.6, 0.3]), label=[None, None, None, "cat"])
    picks = reasons.lowest_confidence(frame)
    assert picks.index.tolist() == [1, 2, 0]
    assert picks["score"].tolist() == pytest.approx([0.6, 0.4, 0.1])


def test_disagreement_picks_flips_confident_ones_first():
    frame = served(4, prediction=["cat", "cat", "dog", "owl"], p_cat=np.array([0.5, 0.9, 0.2, 0.1]),
                   p_dog=np.array([0.3, 0.05, 0.7, 0.1]), p_owl=np.array([0.2, 0.05, 0.1, 0.8]))
    candidate = pd.DataFrame({"request_id": ["r0", "r1", "r2"], "prediction": ["dog", "dog", "dog"],
                              "p_cat": [0.4, 0.1, 0.2], "p_dog": [0.5, 0.85, 0.7], "p_owl": [0.1, 0.05, 0.1]})
    picks = reasons.disagreement(frame, candidate)
    assert picks.index.tolist() == [1, 0]  # r2 agrees, r3 was not shadow-scored
    assert picks["score"].tolist() == pytest.approx([0.8, 0.2])
    assert reasons.disagreement(frame, None).empty


def test_highest_loss_reads_only_labelled_rows_and_clips():
    frame = served(4, label=[None, "dog", "cat", "eagle"], p_cat=np.array([0.5, 0.5, 0.0, 0.1]),
                   p_dog=np.array([0.3, 0.25, 1.0, 0.1]))
    picks = reasons.highest_loss(frame)
    assert picks.index.tolist() == [2, 1]  # an unknown class (eagle) has no probability: skipped
    assert picks["score"].tolist() == pytest.approx([-math.log(reasons.LOSS_FLOOR), -math.log(0.25)])


def test_flags_put_wrong_before_unsure_and_skip_labelled_rows():
    frame = served(5, flag=["unsure", None, "wrong", "wrong", "unsure"], label=[None, None, None, "cat", None])
    picks = reasons.human_flags(frame, seed=3)
    assert picks.index[0] == 2 and set(picks.index[1:]) == {0, 4}
    assert picks["detail"].tolist()[0] == "wrong"


def test_slice_rows_take_turns_between_slices_and_skip_labelled_rows():
    frame = served(40, seed=1, label=[None] * 39 + ["cat"])
    rain = Slice((Predicate("weather", value="rain"),), 20, 10, 0.5, 0.1, 2.0, 1e-5, 1e-4, "labels")
    night = Slice((Predicate("light", value="night"),), 20, 8, 0.4, 0.1, 1.0, 1e-4, 1e-3, "labels")
    picks = reasons.slice_rows(frame, [rain, night])
    details = picks["detail"].tolist()
    assert details[:4] == [str(rain), str(night), str(rain), str(night)]
    inside = rain.matches(frame) | night.matches(frame)
    assert set(picks.index) == set(np.flatnonzero(inside)) - {39}
    assert set(picks.loc[picks["detail"] == str(rain), "score"]) == {2.0}


def test_the_budget_is_the_ceiling_of_the_fraction():
    assert budget_rows(0.02, 500) == 10 and budget_rows(0.02, 501) == 11 and budget_rows(0.02, 0) == 0
    assert budget_rows(1.0, 7) == 7
    with pytest.raises(ValueError, match="budget"):
        budget_rows(0.0, 10)


@pytest.mark.parametrize("budget", [0, 1, 7, 40, 399, 5000])
def test_the_queue_spends_the_budget_exactly_and_holds_each_row_once(budget):
    frame = served(400, seed=2, flag=np.where(np.arange(400) % 50 == 0, "wrong", None).astype(object),
                   label=np.where(np.arange(400) % 7 == 0, "cat", None).astype(object))
    picks = {reasons.FLAG: reasons.human_flags(frame), reasons.LOW_CONFIDENCE: reasons.lowest_confidence(frame),
             reasons.HIGH_LOSS: reasons.highest_loss(frame)}
    queue = build_queue(frame, picks, budget)
    assert len(queue) == min(budget, 400)  # every row is eligible for some reason
    assert queue["request_id"].is_unique and queue["queue_position"].tolist() == list(range(1, len(queue) + 1))
    labelled = queue["label"].notna()
    assert not queue.loc[labelled, ["reason_flag", "reason_low_confidence"]].to_numpy().any()
    assert queue.loc[labelled, "reason_high_loss"].all()


def test_flags_come_first_and_may_take_the_whole_budget():
    frame = served(100, seed=3, flag=np.where(np.arange(100) < 30, "unsure", None).astype(object))
    frame.loc[[5, 6], "flag"] = "wrong"
    picks = {reasons.FLAG: reasons.human_flags(frame), reasons.LOW_CONFIDENCE: reasons.lowest_confidence(frame)}
    queue = build_queue(frame, picks, 10)
    assert queue["reason_flag"].all()
    assert set(queue["request_id"][:2]) == {"r5", "r6"}
    assert build_queue(frame, picks, 40)["reason_flag"].sum() == 30


def test_the_rest_is_shared_equally_and_an_unused_share_flows_on():
    frame = served(300, seed=4, label=np.where(np.arange(300) < 3, "cat", None).astype(object))
    frame.loc[0:2, "p_cat"] = 0.01  # three labelled rows: high_loss can fill only 3 of its share
    candidate = frame[["request_id", "p_cat", "p_dog", "p_owl"]].assign(prediction=np.where(frame["prediction"] == "cat", "dog", "cat"))
    picks = {reasons.LOW_CONFIDENCE: reasons.lowest_confidence(frame),
             reasons.DISAGREEMENT: reasons.disagreement(frame, candidate), reasons.HIGH_LOSS: reasons.highest_loss(frame)}
    queue = build_queue(frame, picks, 30)
    counts = reason_counts(queue)
    assert len(queue) == 30 and counts["high_loss"] == 3
    new = {r: (queue[f"reason_{r}"] & (queue["reasons"].str.split("; ").str[0] == r)).sum() for r in counts}
    assert new["low_confidence"] >= 10 and new["disagreement"] >= 10
    assert sum(new.values()) == 30


def test_a_row_picked_twice_keeps_both_reasons_and_scores():
    frame = served(10, seed=5, flag=[None, None, "wrong"] + [None] * 7)
    frame.loc[2, "confidence"] = 0.01  # flagged and the least confident
    picks = {reasons.FLAG: reasons.human_flags(frame), reasons.LOW_CONFIDENCE: reasons.lowest_confidence(frame)}
    queue = build_queue(frame, picks, 3)
    first = queue.iloc[0]
    assert first["request_id"] == "r2" and first["reasons"] == "flag; low_confidence"
    assert first["reason_flag"] and first["reason_low_confidence"]
    assert first["score_flag"] == 2.0 and first["score_low_confidence"] == pytest.approx(0.99)
    assert len(queue) == 3 and queue["request_id"].is_unique


def test_the_queue_is_the_same_for_the_same_seed():
    frame = served(200, seed=6, confidence=np.round(np.random.default_rng(0).random(200), 1))  # many ties

    def queue(seed):
        return build_queue(frame, {reasons.LOW_CONFIDENCE: reasons.lowest_confidence(frame, seed)}, 20)["request_id"].tolist()

    assert queue(1) == queue(1) and queue(1) != queue(2)


def test_feedback_keeps_the_newest_revision_and_joins_by_request_id():
    items = [{"request_id": "r1", "label": "cat", "flag": None, "note": "", "revision": 1, "actor": "a"},
             {"request_id": "r1", "label": "dog", "flag": None, "note": "fixed", "revision": 2, "actor": "a"},
             {"request_id": "r3", "label": None, "flag": "unsure", "note": None, "revision": 1, "actor": "b"}]
    table = feedback.frame(items)
    assert table.set_index("request_id").loc["r1", "label"] == "dog"
    joined = feedback.attach(served(4).drop(columns=["label", "flag"]), table)
    assert joined["label"].tolist() == [None, "dog", None, None]
    assert joined["flag"].tolist() == [None, None, None, "unsure"]
    assert feedback.frame([]).columns.tolist() == feedback.COLUMNS
    with pytest.raises(ValueError, match="flags"):
        feedback.attach(served(2), pd.DataFrame({"request_id": ["r0"], "label": [None], "flag": ["bad"], "note": [None]}))


def test_mining_a_window_queues_the_planted_slice_first_after_flags():
    rng = np.random.default_rng(7)
    n = 3000
    frame = served(n, seed=7)
    truth = frame["prediction"].to_numpy().copy()
    bad = ((frame["weather"] == "rain") & (frame["light"] == "night")).to_numpy() & (rng.random(n) < 0.5)
    truth[bad] = "owl-or-not"
    frame["label"] = pd.Series(np.where(np.arange(n) < 2000, truth, None), dtype=object)
    frame.loc[2000, "flag"] = "wrong"
    mined = mine_window(frame, champion_run_id="champ", fraction=0.02, seed=0)
    assert mined.budget == 60 and len(mined.queue) == 60
    assert mined.queue.iloc[0]["reasons"].startswith("flag")
    assert {str(s) for s in mined.search.slices if s.level == 2} >= {"weather=rain and light=night"}
    assert reason_counts(mined.queue)["slice"] >= 15
    assert mine_window(frame.iloc[:0]).queue.empty


def test_random_selection_spends_the_same_budget_on_unlabelled_rows_without_a_reason():
    """The control arm: the planted slice and the flag are still there, the queue ignores them —
    a uniform sample of the unlabelled rows, the same for the same seed, a different one for another."""
    frame = served(3000, seed=7, label=[None] * 1000 + ["cat"] * 2000)
    frame.loc[10, "flag"] = "wrong"
    mined = mine_window(frame, champion_run_id="champ", fraction=0.02, seed=0, selection="random")
    assert mined.budget == 60 and len(mined.queue) == 60
    assert set(mined.picks) == {reasons.RANDOM} and (mined.queue["reasons"] == "random").all()
    assert mined.queue["label"].isna().all() and mined.queue["slice"].eq("").all()
    again = mine_window(frame, champion_run_id="champ", fraction=0.02, seed=0, selection="random")
    other = mine_window(frame, champion_run_id="champ", fraction=0.02, seed=1, selection="random")
    assert again.queue["request_id"].tolist() == mined.queue["request_id"].tolist()
    assert other.queue["request_id"].tolist() != mined.queue["request_id"].tolist()
    ranks = reasons.random_rows(served(4000, seed=3), seed=5).index.to_numpy()
    assert abs(np.mean(ranks[:400]) - 1999.5) < 4 * 1155 / math.sqrt(400)  # the first tenth: no drift in the order
    with pytest.raises(ValueError, match="selection must be one of"):
        mine_window(frame, selection="loudest")


def test_ties_are_broken_by_each_rows_request_id_not_its_place_in_the_window():
    """The tie-break is a keyed hash of the request id: the same rows read in another order (other
    log files first, another engine's partitions) give the same ranking, reason by reason."""
    frame = served(500, seed=8, confidence=np.round(np.random.default_rng(1).random(500), 1),
                   flag=np.where(np.arange(500) % 5 == 0, "unsure", None).astype(object))
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for rank in (reasons.lowest_confidence, reasons.human_flags, reasons.random_rows):
        first, second = rank(frame, seed=4), rank(shuffled, seed=4)
        assert frame.loc[first.index, "request_id"].tolist() == shuffled.loc[second.index, "request_id"].tolist()
    draws = reasons.draws(frame["request_id"], 4, reasons.FLAG)
    assert draws.dtype == np.int64 and (draws >= 0).all() and len(set(draws)) == 500
    assert not np.array_equal(draws, reasons.draws(frame["request_id"], 4, reasons.LOW_CONFIDENCE))


@pytest.mark.parametrize("budget", [1, 5, 30, 120])
def test_the_queue_needs_no_more_than_twice_the_budget_of_each_ranking(budget):
    """What lets the Spark engine collect only each reason's first 2 x budget rows: a reason's walk
    queues a new row (at most ``budget``) or passes one already queued (at most ``budget``) at each
    step, so the rows past 2 x budget never change the queue. Rankings that overlap a lot."""
    frame = served(600, seed=9, flag=np.where(np.arange(600) % 4 == 0, "wrong", None).astype(object),
                   confidence=np.linspace(0.3, 0.99, 600), label=np.where(np.arange(600) % 9 == 0, "cat", None).astype(object))
    rain = Slice((Predicate("weather", value="rain"),), 300, 100, 0.3, 0.1, 1.0, 1e-5, 1e-4, "labels")
    picks = {reasons.FLAG: reasons.human_flags(frame), reasons.SLICE: reasons.slice_rows(frame, [rain]),
             reasons.LOW_CONFIDENCE: reasons.lowest_confidence(frame), reasons.HIGH_LOSS: reasons.highest_loss(frame),
             reasons.DISAGREEMENT: reasons.disagreement(frame, None)}
    full = build_queue(frame, picks, budget)
    cut = build_queue(frame, {r: p.iloc[:2 * budget] for r, p in picks.items()}, budget)
    pd.testing.assert_frame_equal(full, cut)
    assert len(full) == budget and sum(len(p) for p in picks.values()) > 4 * budget

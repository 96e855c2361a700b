"""Curation on constructed queues: real scenes (pixels, metadata) as ``mine`` queues them.

The rules of ``projects.curate.core`` one by one (labels, pixels, duplicates, the newest revision,
the base's exact layout, a deterministic version), the manifest ``run.save_with_origin`` writes,
and the whole entry point in-process on SQLite with the hard-case set registered through the
embedded gate.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gatekeeper_cli.client import GatekeeperClient
from projects.curate.__main__ import build_parser, main
from projects.curate.core import class_indices, curate, extend
from projects.curate.run import save_with_origin
from projects.datasets import DataError, content_hash
from projects.scenes import CLASS_NAMES, PIXEL_COLUMNS, SUMMARY_COLUMNS, generate, load_version, pixels, save_version
from tests.support.tracking import tracking_at

REASONS = ("flag", "slice", "low_confidence", "disagreement", "high_loss")


def make_queue(scenes: pd.DataFrame, labels, *, prefix: str = "req", slices: dict[int, str] | None = None) -> pd.DataFrame:
    """``scenes`` as a ``mine`` queue (the log's columns, feedback attached, reason columns):
    ``labels`` one class name or None per row, ``slices`` row -> the slice it was picked from
    (the other rows are low-confidence picks)."""
    slices = slices or {}
    n = len(scenes)
    sliced = np.array([i in slices for i in range(n)])
    queue = pd.DataFrame({
        "queue_position": np.arange(1, n + 1),
        "request_id": [f"{prefix}-{i}" for i in range(n)],
        "prediction": "nothing", "confidence": 0.4,
        "weather": scenes["weather"].to_numpy(), "light": scenes["light"].to_numpy(),
        **{c: scenes[c].to_numpy() for c in SUMMARY_COLUMNS[:2]},  # a caller may send some summaries, or none
        "input_sha256": "", "pixels": [row.tobytes() for row in np.ascontiguousarray(pixels(scenes))],
        "label": pd.Series(labels, dtype=object), "flag": None, "note": None,
        **{f"reason_{r}": sliced if r == "slice" else (~sliced if r == "low_confidence" else False) for r in REASONS},
        "slice": [slices.get(i, "") for i in range(n)],
    })
    queue["reasons"] = np.where(sliced, "slice", "low_confidence")
    return queue


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return generate(30, "summer", seed=1)


@pytest.fixture(scope="module")
def incoming() -> pd.DataFrame:
    return generate(8, "rainy_season", seed=2)


def names(scenes: pd.DataFrame) -> list[str]:
    return list(scenes["label_name"])


def test_labelled_rows_join_the_base_in_its_exact_layout(base, incoming):
    labels = names(incoming)[:5] + [None] * 3
    curated = curate(make_queue(incoming, labels), base)
    assert (curated.labelled, len(curated.added)) == (5, 5)
    assert curated.skipped == {"unlabelled": 3, "no_pixels": 0, "duplicate": 0}
    added = curated.added
    assert list(added.columns) == list(base.columns) and (added.dtypes == base.dtypes).all()
    assert list(added["row_id"]) == [f"req-{i}" for i in range(5)]
    expected = incoming.iloc[:5].reset_index(drop=True)
    assert (added["label"] == expected["label"]).all() and (added["label_name"] == expected["label_name"]).all()
    assert (added[["weather", "light"]] == expected[["weather", "light"]]).all().all()
    assert (pixels(added) == pixels(expected)).all()
    # the summaries recomputed from the pixels are the generator's own, bit for bit
    assert (added[SUMMARY_COLUMNS].to_numpy() == expected[SUMMARY_COLUMNS].to_numpy()).all()
    table = curated.table
    assert len(table) == 35 and table.iloc[:30].equals(base) and (table.dtypes == base.dtypes).all()


def test_the_label_is_the_feedbacks_not_the_generators(base, incoming):
    relabelled = ["pedestrian"] * len(incoming)
    curated = curate(make_queue(incoming, relabelled), base)
    assert set(curated.added["label"]) == {CLASS_NAMES.index("pedestrian")}
    assert curated.summary()["by_label"] == {"pedestrian": 8}


def test_rows_without_pixels_are_counted_and_not_added(base, incoming):
    queue = make_queue(incoming, names(incoming))
    queue.loc[0, "pixels"] = None  # the log kept a reference only
    queue.at[1, "pixels"] = b"\x00" * 8  # not a 32x32 RGB image
    curated = curate(queue, base)
    assert curated.skipped == {"unlabelled": 0, "no_pixels": 2, "duplicate": 0}
    assert list(curated.added["row_id"]) == [f"req-{i}" for i in range(2, 8)]


def test_an_image_already_trained_on_or_queued_twice_is_added_once(base, incoming):
    again = pd.concat([base.iloc[[3]], incoming.iloc[[0]], incoming.iloc[[1]], incoming.iloc[[3]]], ignore_index=True)
    queue = pd.concat([make_queue(incoming.iloc[:3], names(incoming)[:3]),
                       make_queue(again, names(again), prefix="again")], ignore_index=True)
    queue.loc[6, "request_id"] = "req-2"  # a caller id used twice, here with another image
    curated = curate(queue, base)
    assert list(curated.added["row_id"]) == ["req-0", "req-1", "req-2"]
    # base row 3; the images of req-0 and req-1 again; the id req-2 again (on another image)
    assert curated.skipped["duplicate"] == 4 and curated.labelled == 4
    # curated again against its own result: nothing is new
    assert curate(queue, curated.table).added.empty


def test_the_newest_revision_wins_over_what_mining_attached(base, incoming):
    queue = make_queue(incoming.iloc[:4], ["orange_cone"] * 4)
    items = [{"request_id": "req-0", "label": "pedestrian", "revision": 1},
             {"request_id": "req-0", "label": "nothing", "revision": 2},  # a correction
             {"request_id": "req-1", "label": None, "flag": "unsure", "revision": 3},  # label cleared
             {"request_id": "req-3", "label": "Green_Cone"}]  # from a file: no revision, spelled otherwise
    curated = curate(queue, base, items)
    by_id = dict(zip(curated.added["row_id"], curated.added["label_name"]))
    assert by_id == {"req-0": "nothing", "req-2": "orange_cone", "req-3": "green_cone"}
    assert curated.skipped["unlabelled"] == 1


def test_a_label_that_is_no_class_is_an_error():
    assert list(class_indices(pd.Series(["nothing", " Pedestrian "]))) == [3, 2]
    with pytest.raises(DataError, match="'cat'"):
        class_indices(pd.Series(["nothing", "cat"]))


def test_the_same_labelled_rows_give_the_same_version_in_any_order(base, incoming, tmp_path):
    queue = make_queue(incoming, names(incoming), slices={1: "weather=rain", 4: "weather=rain", 6: "light=night"})
    first = curate(queue, base)
    shuffled = curate(queue.sample(frac=1, random_state=7).reset_index(drop=True), base)
    assert content_hash(first.table) == content_hash(shuffled.table)
    origin = {"queue": {"content_hash": "q" * 64}, "base": {"content_hash": "b" * 64}}
    folder, manifest = save_with_origin(first.table, tmp_path / "train", {**origin, "added": first.summary()})
    again, _ = save_with_origin(shuffled.table, tmp_path / "train", {**origin, "added": shuffled.summary()})
    assert again == folder and [p.name for p in (tmp_path / "train").iterdir()] == [folder.name]
    table, stored = load_version(folder)  # the content hash verified on reading
    assert stored == manifest and len(table) == 38 and stored["n"] == 38 and stored["mix"] is None
    assert stored["curation"]["added"] == {
        "rows": 8, "by_reason": {**dict.fromkeys(REASONS, 0), "slice": 3, "low_confidence": 5},
        "by_label": dict(sorted(pd.Series(names(incoming)).value_counts().to_dict().items())),
        "by_slice": {"light=night": 1, "weather=rain": 2}}
    assert stored["curation"]["queue"] == origin["queue"]


def test_failing_slice_rows_extend_the_hard_case_set_once(base, incoming):
    queue = make_queue(incoming, names(incoming), slices={1: "weather=rain", 4: "weather=rain"})
    curated = curate(queue, base)
    assert list(curated.hard_cases["row_id"]) == ["req-1", "req-4"] and curated.hard_slices == {"weather=rain": 2}
    previous = generate(5, "rainy_season", seed=9)  # as retrain registers a flagged window
    grown = extend(previous, curated.hard_cases)
    assert len(grown) == 7 and grown.iloc[:5].equals(previous) and (grown.dtypes == previous.dtypes).all()
    assert extend(grown, curated.hard_cases) is None  # nothing new: no new set version
    assert extend(None, curated.hard_cases).equals(curated.hard_cases)


@pytest.fixture(scope="module")
def arguments(tmp_path_factory) -> dict[str, str]:
    """A valid command line's values: a queue folder and a base version."""
    root = tmp_path_factory.mktemp("arguments")
    (root / "q").mkdir()
    (root / "q" / "queue.parquet").write_bytes(b"")
    (root / "q" / "manifest.json").write_text("{}")
    return {"--queue": str(root / "q"), "--base": str(save_version(generate(4, seed=0), root / "base")[0])}


@pytest.mark.parametrize("argument, value", [("--min-labels", "0"), ("--min-labels", "two"), ("--hard-cases", "a@b"),
                                             ("--queue", "nowhere"), ("--base", "nowhere"), ("--feedback", "x.csv")])
def test_a_bad_parameter_exits_2_naming_it(arguments, argument, value, capsys):
    assert build_parser().parse_args([item for pair in arguments.items() for item in pair]).min_labels == 1
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([item for pair in {**arguments, argument: value}.items() for item in pair])
    assert exited.value.code == 2 and argument in capsys.readouterr().err


def write_queue_folder(folder, queue: pd.DataFrame, model: str = "road-scenes"):
    folder.mkdir(parents=True)
    queue.to_parquet(folder / "queue.parquet", index=False)
    window = {"start": "2026-12-04T00:00:00+00:00", "end": "2026-12-05T00:00:00+00:00"}
    (folder / "manifest.json").write_text(json.dumps({"content_hash": folder.name, "registered_model": model,
                                                      "window": window, "queue_rows": len(queue)}))


def test_the_entry_point_on_sqlite_writes_logs_and_registers_hard_cases(base, incoming, tmp_path, capsys):
    import mlflow

    base_dir, _ = save_version(base, tmp_path / "data" / "train")
    queue_dir = tmp_path / "queues" / ("a" * 64)
    write_queue_folder(queue_dir, make_queue(incoming, names(incoming)[:6] + [None, None], slices={2: "weather=rain"}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--queue", str(queue_dir), "--base", str(base_dir), "--feedback", "none", "--out", str(tmp_path / "data" / "train")]
    with tracking_at(uri, "curate", tmp_path / "artifacts"):
        assert main(args) == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-2])
        # curated again onto what it made: nothing is new, and the hard case is in the set already
        assert main(args[:2] + ["--base", report["path"]] + args[4:]) == 0
        again = capsys.readouterr().out.strip().splitlines()
        run = mlflow.get_run(report["run_id"])
    assert report["changed"] and report["rows_added"] == 6
    assert report["hard_cases"] == {"name": "hard-cases", "version": 1, "n_rows": 1}
    assert again[-1] == f"curated: {report['path']}" and not json.loads(again[-2])["changed"]
    assert "note: nothing new: every labelled row is in the base already" in again
    assert "note: every hard case is in hard-cases v1 already" in again
    (registered,) = GatekeeperClient(uri).sets("hard-cases")
    assert load_version(registered["source"])[0]["row_id"].tolist() == ["req-2"]
    table, manifest = load_version(report["path"])
    assert len(table) == 36 and manifest["curation"]["queue"]["content_hash"] == "a" * 64
    metrics = run.data.metrics
    assert (metrics["rows_added"], metrics["hard_cases_added"], metrics["rows_skipped_unlabelled"]) == (6, 1, 2)
    assert run.data.tags["gatekeeper.dataset.version"] == manifest["content_hash"]
    contexts = {{t.key: t.value for t in d.tags}["mlflow.data.context"]: d.dataset.name for d in run.inputs.dataset_inputs}
    assert contexts == {"base": f"base-{base_dir.name[:12]}", "training": f"training-{manifest['content_hash'][:12]}",
                        "queue": f"labelling-queue-{'a' * 12}", "hard_cases": "hard-cases-v1"}

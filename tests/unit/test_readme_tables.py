"""The README's benchmark tables are the result files' figures (``benchmarks/readme_tables.py``).

A figure in README.md that no longer matches ``benchmarks/results/*.json`` fails here, so a
number cannot be edited by hand or outlive the measurement it came from.
"""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import readme_tables


def test_readme_tables_match_the_result_files(capsys):
    status = readme_tables.main(["--check"])
    assert status == 0, "README.md differs from benchmarks/results: run python benchmarks/readme_tables.py\n" + \
        capsys.readouterr().out[-4000:]


def test_a_changed_measurement_changes_the_readme(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(readme_tables.RESULTS, results)
    statistics = results / "statistics.json"
    record = json.loads(statistics.read_text())
    for row in record["figures"]["rows"]:
        row["seconds"] *= 3
    statistics.write_text(json.dumps(record))
    readme = readme_tables.README.read_text()
    assert readme_tables.render(readme, results) != readme


def test_a_benchmark_without_a_result_file_is_not_measured(tmp_path):
    rendered = readme_tables.render(readme_tables.README.read_text(), tmp_path)
    for name in readme_tables.TABLES:
        block = rendered.split(f"<!-- benchmarks:{name}:begin -->")[1].split(f"<!-- benchmarks:{name}:end -->")[0]
        assert readme_tables.NOT_MEASURED in block, name


def test_a_missing_marker_is_an_error():
    readme = readme_tables.README.read_text().replace("<!-- benchmarks:gate:begin -->", "")
    with pytest.raises(ValueError, match="markers"):
        readme_tables.render(readme)


def test_the_mining_benchmark_makes_a_row_per_size_and_engine(tmp_path):
    """``readme_tables.spark_mine`` (the README's mining-on-Spark table):
    each job's figures, whether the engines agreed, a failed job, the sizes left to Spark alone."""
    def job(seconds: float, **figures) -> dict:
        return {"seconds": seconds, "driver_peak_mb": 600.0, "jvm_peak_mb": 0.0, "workers_peak_mb": 0.0, "exit": 0,
                "queue_rows": 20_000} | figures

    sizes = [{"rows": 1_000_000, "generation": {"seconds": 2.0}, "same_queue": True,
              "engines": {"local": job(20.0), "spark": job(30.0, jvm_peak_mb=2048.0, workers_peak_mb=300.0)}},
             {"rows": 50_000_000, "generation": {"seconds": 100.0}, "same_queue": None,
              "engines": {"spark": job(5.0, exit=1, error="java.lang.OutOfMemoryError")}}]
    record = {"date": "2026-12-06T09:04:01+00:00", "command": "python benchmarks/bench_spark_mine.py",
              "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [2.0, 2.0, 2.0], "wall_seconds": 600.0,
              "git": {"commit": "0" * 40, "uncommitted": []}, "machine": {"cpu_count": 2, "cpu_model": "cpu", "ram_gib": 24.0},
              "figures": {"sizes": sizes}}
    (tmp_path / "spark_mine.json").write_text(json.dumps(record))
    rendered = readme_tables.spark_mine(tmp_path)
    assert "| 1M | local | 20.0 s | 600 MB | — | — | 20,000 | yes |" in rendered
    assert "| 1M | spark | 30.0 s | 600 MB | 2.00 GB | 300 MB | 20,000 | yes |" in rendered
    assert "| 50M | spark | failed (exit 1) | 600 MB | 0 MB | 0 MB | — | — |" in rendered
    assert "not run on 50M rows" in rendered and "1M rows in 2.00 s, 50M rows in 100 s" in rendered
    assert readme_tables.spark_mine(tmp_path / "nothing") == readme_tables.NOT_MEASURED

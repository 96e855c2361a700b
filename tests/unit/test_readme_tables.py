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

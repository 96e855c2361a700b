"""The pipeline's shared argument types, and the autopilot's command line built from them.

MLflow Projects passes every parameter as text and checks none, so these are the only guard
between ``-P budget=nan`` and a loop that labels nothing (or everything)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from projects.autopilot.__main__ import build_parser
from projects.cli_types import integer_at_least, number_in

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, value", [("8000", 8000), ("8000.0", 8000), ("0", 0)])
def test_integer_at_least_takes_integral_text(text, value):
    assert integer_at_least(0)(text) == value


@pytest.mark.parametrize("text", ["-1", "2.5", "lots", "nan", "inf", ""])
def test_integer_at_least_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer >= 0"):
        integer_at_least(0)(text)


def test_number_in_closed_and_open_bounds():
    seconds, fraction = number_in(0, 60, "seconds"), number_in(0, 1, "a fraction", low_open=True)
    assert seconds("0") == 0.0 and seconds("60") == 60.0 and fraction("1") == 1.0 and fraction("1e-9") == 1e-9
    for parse, text in ((seconds, "-0.1"), (seconds, "60.5"), (seconds, "nan"), (seconds, "inf"), (seconds, "soon"),
                        (fraction, "0"), (fraction, "-inf"), (fraction, "1.01")):
        with pytest.raises(argparse.ArgumentTypeError) as info:
            parse(text)
        assert repr(text) in str(info.value)
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a fraction in \(0, 1\]"):
        fraction("0")


def test_the_autopilots_command_line():
    parse = build_parser().parse_args
    live = parse(["--simulate-weeks", "0", "--every-s", "30", "--cycles", "2", "--window-days", "0.5"])
    assert (live.simulate_weeks, live.every_s, live.cycles, live.window_days, live.serving) == (0, 30, 2, 0.5, "serve")
    assert parse(["--simulate-weeks", "8.0", "--selection", "random", "--serving", "in-process"]).selection == "random"
    for bad in (["--simulate-weeks", "-1"], ["--simulate-weeks", "1", "--budget", "0"], ["--simulate-weeks", "1", "--selection", "loud"],
                ["--simulate-weeks", "1", "--serving", "docker"], ["--simulate-weeks", "0", "--window-days", "0"],
                ["--simulate-weeks", "0", "--every-s", "0"], []):
        with pytest.raises(SystemExit) as info:
            parse(bad)
        assert info.value.code == 2, bad


def test_the_autopilot_refuses_to_start_without_the_inference_log(tmp_path):
    """It mines what production logged: with the log off there is nothing to watch (said before
    anything is asked of the server, which here does not exist)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GATEKEEPER_", "PYTEST_"))}
    env.update(GATEKEEPER_INFERENCE_LOG="off", MLFLOW_TRACKING_URI="http://127.0.0.1:9", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "projects.autopilot", "--simulate-weeks", "1"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "GATEKEEPER_INFERENCE_LOG is 'off'" in result.stderr

"""Small, fast runs of the labelling benchmarks (issue 15; the full runs are for an idle machine, see
benchmarks/README.md): a load of labels during an import and an ask, and kill -9 during an import and a serve.
Each script checks what it claims (every acknowledged label recorded once, nothing lost, integrity_check ok) and
exits 1 if a check fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dalkit

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow


def run_benchmark(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(dalkit.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_small_load_records_every_acknowledged_label_once_while_an_import_and_an_ask_run():
    said = run_benchmark("labelling_load.py", "--clients", "3", "--labels", "10", "--import-rows", "50", "--bound", "5")
    assert "30 labels from 3 clients" in said and "requests/s" in said and "FAIL" not in said
    assert "ok   every acknowledged label in the database exactly once" in said and "ok   the ask finished" in said


def test_kills_during_an_import_and_a_serve_lose_no_acknowledged_label():
    said = run_benchmark(
        "labelling_kill.py", "--count", "2", "--images", "200", "--rows", "50", "--commands", "import,serve"
    )
    assert "import: 2 kills, each all or nothing" in said and "ok: nothing lost" in said
    acknowledged = re.search(r"serve: 2 kills, 0 of (\d+) acknowledged labels lost", said)
    assert acknowledged and int(acknowledged.group(1)) > 0, said

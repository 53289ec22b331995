"""The labelling project's tools for real labellers (issue 15): `status` and `export` without torch, `predict`,
Label Studio export and import, and the page's keys, skip/unsure, undo, progress and labeller name."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_project import SETTINGS, truth

from dalkit.cli import main
from dalkit.project import Project

QUIET = {"log": lambda _: None, "progress": False}
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def trained(folder, tmp_path):
    """A project after a random round (labelled by hand) and a trained round."""
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    first = project.ask(budget=10, **QUIET)
    project.record_labels([(p, truth(p)) for p in first.paths], source="test")
    second = project.ask(**QUIET)
    return project, first, second


def run_cli(code: str) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter, with dalkit importable."""
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_status_and_export_of_a_10000_image_project_load_no_torch_and_answer_quickly(trained, tmp_path):
    project, first, second = trained
    directory = project.directory
    run_predictions = project.predictions()  # the model run again, for comparison with what `ask` stored
    project.store.add_images(f"elsewhere/{k:05d}.png" for k in range(10_000))
    out = tmp_path / "labels.csv"
    answer = run_cli(
        "import json, sys, time\n"
        "from dalkit.cli import main\n"
        "start = time.perf_counter()\n"
        f"codes = [main(['project', 'status', {str(directory)!r}]), "
        f"main(['project', 'export', {str(directory)!r}, '--out', {str(out)!r}])]\n"
        "seconds = time.perf_counter() - start\n"
        "print(json.dumps({'codes': codes, 'seconds': seconds, 'torch': 'torch' in sys.modules}))\n"
    )
    assert answer["codes"] == [0, 0] and answer["torch"] is False
    assert answer["seconds"] < 2.0  # well under a second on an idle machine; slack for a shared one
    rows = {row["image"]: row for row in csv.DictReader(out.open())}
    assert len(rows) == 66 + 10_000
    real = [path for _, path in project.store.images() if not path.startswith("elsewhere/")]
    assert all(rows[p]["prediction"] == run_predictions[p][0] for p in real)  # stored at ask time
    assert all(abs(float(rows[p]["probability"]) - run_predictions[p][1]) < 1e-3 for p in real)
    assert all(rows[p]["round"] == "2" and rows[p]["score"] for p in second.paths)
    assert all(rows[p]["label"] == truth(p) and rows[p]["round"] == "1" for p in first.paths)
    assert rows["elsewhere/00000.png"]["prediction"] == ""


def test_the_cli_module_imports_no_torch():
    answer = run_cli("import json, sys\nimport dalkit.cli\nprint(json.dumps({'torch': 'torch' in sys.modules}))")
    assert answer["torch"] is False


def test_predict_writes_each_images_class_and_confidence(trained, folder, tmp_path, capsys):
    project, _, _ = trained
    (tmp_path / "broken.png").write_bytes(b"not an image")
    images = [str(folder / "dark03.png"), str(folder / "more" / "bright07.png"), str(tmp_path / "broken.png")]
    capsys.readouterr()
    assert main(["project", "predict", str(project.directory), *images]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(captured.out.splitlines()))
    assert [row["image"] for row in rows] == images
    assert [row["prediction"] for row in rows[:2]] == ["night", "day"]
    assert all(0.5 <= float(row["confidence"]) <= 1 for row in rows[:2])
    assert rows[2]["prediction"] == "" and "broken.png" in rows[2]["error"]
    said = captured.err.strip().splitlines()
    assert len(said) == 1 and "broken.png" in said[0]

    out = tmp_path / "predicted.csv"
    assert main(["project", "predict", str(project.directory), images[0], "--out", str(out)]) == 0
    assert [row["prediction"] for row in csv.DictReader(out.open())] == ["night"]


def test_predict_without_a_model_is_one_sentence(folder, tmp_path, capsys):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    project.ask(**QUIET)  # a random round trains no model
    assert main(["project", "predict", str(project.directory), str(folder / "dark00.png")]) == 2
    error = capsys.readouterr().err.strip()
    assert "no model yet" in error and len(error.splitlines()) == 1

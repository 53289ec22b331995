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


# -- Label Studio -------------------------------------------------------------------------------------------


def annotated(task: dict, label: str, **extra) -> dict:
    """A task as Label Studio exports it once a person chose `label`."""
    result = {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}
    annotation = {"id": 1, "result": [result], "was_cancelled": False, "updated_at": "2026-01-01T10:00:00Z", **extra}
    return {**task, "id": 7, "annotations": [annotation]}


def test_label_studio_tasks_carry_the_image_the_guess_and_the_score(trained, folder, capsys):
    project, first, second = trained
    out = project.directory / "tasks.json"
    assert main(["project", "export", str(project.directory), "--format", "label-studio", "--out", str(out)]) == 0
    assert "Label Studio tasks" in capsys.readouterr().out
    tasks = json.loads(out.read_text())
    assert len(tasks) == 66
    by_image = {task["data"]["dalkit_image"]: task for task in tasks}
    task = by_image[second.paths[0]]
    assert task["data"]["image"] == "/data/local-files/?d=" + second.paths[0]  # relative to the image folder
    assert task["data"]["dalkit_round"] == 2 and isinstance(task["data"]["dalkit_score"], float)
    (prediction,) = task["predictions"]
    (result,) = prediction["result"]
    assert result["type"] == "choices" and result["value"]["choices"][0] in ("night", "day")
    assert result["from_name"] == "label" and result["to_name"] == "image" and 0.5 <= prediction["score"] <= 1
    assert by_image[first.paths[0]]["data"]["dalkit_label"] == truth(first.paths[0])
    config = (project.directory / "label-studio-config.xml").read_text()
    assert '<Choice value="night"/>' in config and 'name="image"' in config and 'name="label"' in config

    root = folder.parent
    assert (
        main(["project", "export", str(project.directory), "--format", "label-studio", "--document-root", str(root)])
        == 0
    )
    tasks = json.loads((project.directory / "label-studio.json").read_text())
    assert all(task["data"]["image"] == f"/data/local-files/?d=photos/{task['data']['dalkit_image']}" for task in tasks)


def test_a_label_studio_export_is_imported_by_dalkit_image_or_file_name(trained, tmp_path, capsys):
    project, first, second = trained
    assert main(["project", "export", str(project.directory), "--format", "label-studio"]) == 0
    tasks = {t["data"]["dalkit_image"]: t for t in json.loads((project.directory / "label-studio.json").read_text())}
    a, b, c, d = second.paths[:4]
    exported = [
        annotated(tasks[a], truth(a)),
        {**annotated(tasks[b], truth(b)), "data": {"image": f"/data/upload/3/1a2b3c4d-{Path(b).name}"}},
        annotated(tasks[c], "night", was_cancelled=True),  # skipped in Label Studio: no label
        tasks[d],  # not annotated
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(exported))
    capsys.readouterr()
    assert main(["project", "import", str(project.directory), str(path)]) == 0
    assert "2 label(s) recorded" in capsys.readouterr().out
    labels = project.labels()
    assert labels[a] == truth(a) and labels[b] == truth(b) and c not in labels and d not in labels
    (image_id,) = [i for i, p in project.store.images() if p == a]
    assert project.store.label_history(image_id)[-1][1] == "label-studio:export.json"


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda tasks: [annotated(tasks[0], "dusk")], "'dusk'"),
        (lambda tasks: [annotated({"data": {"image": "/data/upload/1/nope.png"}}, "day")], "nope.png"),
        (lambda tasks: {"tasks": tasks}, "not Label Studio's JSON export"),
        (
            lambda tasks: [
                {
                    **annotated(tasks[0], "day"),
                    "annotations": [
                        {
                            "result": [{"type": "choices", "value": {"choices": ["day", "night"]}}],
                            "was_cancelled": False,
                        }
                    ],
                }
            ],
            "one class",
        ),
        (lambda tasks: [annotated(tasks[0], "day"), annotated(tasks[0], "night")], "earlier task"),
    ],
)
def test_a_broken_label_studio_export_is_one_sentence_and_records_nothing(trained, tmp_path, change, words):
    project, _, _ = trained
    before = project.labels()
    tasks = [{"data": {"image": f"/data/local-files/?d={p}", "dalkit_image": p}} for _, p in project.store.images()]
    tasks = [t for t in tasks if t["data"]["dalkit_image"] not in before]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(change(tasks)))
    good = annotated(tasks[1], "day")
    if isinstance(change(tasks), list):  # a good task first: nothing of it is kept either
        path.write_text(json.dumps([good, *change(tasks)]))
    from dalkit.errors import DalkitError

    with pytest.raises(DalkitError, match=words) as error:
        project.import_label_studio(path)
    assert len(str(error.value).splitlines()) == 1 and project.labels() == before
    path.write_text("[{")
    with pytest.raises(DalkitError, match="not a readable JSON"):
        project.import_label_studio(path)


def test_a_stale_label_studio_export_never_overrides_a_newer_label(trained, tmp_path, capsys):
    project, _, second = trained
    a, b = second.paths[:2]
    path = tmp_path / "export.json"
    tasks = [{"data": {"image": f"/data/local-files/?d={p}", "dalkit_image": p}} for p in (a, b)]
    path.write_text(json.dumps([annotated(tasks[0], truth(a)), annotated(tasks[1], truth(b))]))
    saved = path.stat().st_mtime
    os.utime(path, (saved - 60, saved - 60))
    wrong = "day" if truth(a) == "night" else "night"
    project.record_labels([(a, wrong)], source="web")
    assert project.import_label_studio(path) == 1
    assert project.labels()[a] == wrong and project.labels()[b] == truth(b)
    said = capsys.readouterr().out.strip()
    assert len(said.splitlines()) == 1 and a in said and "task(s)" in said

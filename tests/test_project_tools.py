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
        f"main(['project', 'export', {str(directory)!r}, '--out', {str(out)!r}]), "
        f"main(['project', 'export', {str(directory)!r}, '--format', 'label-studio', '--document-root', '/'])]\n"
        "seconds = time.perf_counter() - start\n"
        "print(json.dumps({'codes': codes, 'seconds': seconds, 'torch': 'torch' in sys.modules}))\n"
    )
    assert answer["codes"] == [0, 0, 0] and answer["torch"] is False
    assert (
        answer["seconds"] < 3.0
    )  # three commands, each well under a second on an idle machine; slack for a shared one
    assert len(json.loads((directory / "label-studio.json").read_text())) == 66 + 10_000
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


# -- the page: keys, skip / unsure, undo, progress, the labeller's name -------------------------------------


def post_answer(client, headers, image, seq, **fields):
    body = {"image": image, "round": 1, "labeller": "page1", "seq": seq, **fields}
    return client.post("/label", json=body, headers=headers)


def history(project, path):
    (image_id,) = [i for i, p in project.store.images() if p == path]
    return [(label, source) for label, source, _ in project.store.label_history(image_id)]


def test_the_page_has_a_key_for_each_of_36_classes_and_hints_on_its_buttons(folder, tmp_path):
    from test_project_web import make_client

    classes = [f"c{k:02d}" for k in range(37)]
    project = Project.create(tmp_path / "p", folder, classes, **SETTINGS)
    project.ask(**QUIET)
    page = make_client(project).get("/").text
    assert "<kbd>1</kbd> c00" in page and "<kbd>9</kbd> c08" in page and "<kbd>0</kbd> c09" in page
    assert "<kbd>a</kbd> c10" in page and "<kbd>z</kbd> c35" in page
    assert '<button data-label="c36" class="">c36</button>' in page  # the 37th class has a button, no key
    assert "1234567890abcdefghijklmnopqrstuvwxyz" in page
    assert "<kbd>space</kbd> skip" in page and "<kbd>?</kbd> unsure" in page and "undo" in page
    assert 'id="progress"' in page and "answered" in page
    assert "localStorage" in page and "name" in page  # the labeller's name, asked once per browser


def test_skip_and_unsure_are_recorded_as_answers_not_labels(page_client):
    project, asked, client, headers = page_client
    a, b, c = asked.paths[:3]
    assert post_answer(client, headers, a, 1, answer="skip", name="Ada").status_code == 200
    reply = post_answer(client, headers, b, 2, answer="unsure", name="Ada")
    assert reply.status_code == 200 and sum(reply.json()["labelled"].values()) == 0
    assert project.labels() == {} and sum(project.class_counts().values()) == 0
    ids = {p: i for i, p in project.store.images()}
    assert project.store.set_aside(1) == {ids[a]: "skip", ids[b]: "unsure"}
    assert project.rounds()[0]["labelled"] == 0 and project.rounds()[0]["set_aside"] == 2
    page = client.get("/").text  # set aside for this round: shown as answered, after the open ones
    card = page[page.index(f'data-image="{a}"') - 20 :]
    assert 'class="card done"' in card[:40] and 'data-answer="skip"' in card[:200]
    assert page.index(f'data-image="{c}"') < page.index(f'data-image="{a}"')
    # a label given later takes the answer back
    assert post_answer(client, headers, b, 3, label=truth(b), name="Ada").status_code == 200
    assert project.store.set_aside(1) == {ids[a]: "skip"} and project.labels() == {b: truth(b)}
    assert is_refused(post_answer(client, headers, c, 4, answer="maybe"))


def is_refused(response) -> bool:
    return response.status_code == 400 and "error" in response.json()


def test_undo_records_the_previous_state_as_a_new_row_with_the_labellers_name(page_client):
    project, asked, client, headers = page_client
    a, b = asked.paths[:2]
    assert post_answer(client, headers, a, 1, label="night", name="Ada").status_code == 200
    assert post_answer(client, headers, a, 2, answer="none", name="Ada").status_code == 200  # undo: unlabelled
    assert project.labels() == {} and history(project, a) == [("night", "web:Ada"), ("", "web:Ada")]
    assert post_answer(client, headers, b, 3, label="night", name="Ada").status_code == 200
    assert post_answer(client, headers, b, 4, label="day", name="Ada").status_code == 200
    assert post_answer(client, headers, b, 5, label="night", name="Ada").status_code == 200  # undo of the change
    assert [label for label, _ in history(project, b)] == ["night", "day", "night"]
    retried = post_answer(client, headers, a, 2, answer="none", name="Ada")  # the undo, retried: recorded once
    assert retried.json()["duplicate"] is True and len(history(project, a)) == 2
    # an undo of a skip takes the answer back; the image is open again in this round
    assert post_answer(client, headers, a, 6, answer="skip").status_code == 200
    assert post_answer(client, headers, a, 7, answer="none").status_code == 200
    assert project.store.set_aside(1) == {}
    # a skip of a labelled image (an undo back to "skipped") takes its label back
    assert post_answer(client, headers, b, 8, answer="skip").status_code == 200
    assert b not in project.labels() and history(project, b)[-1] == ("", "web")
    # an undone label leaves the image unlabelled for the next round too
    assert a not in project.labels() and len(project.store.current_labels()) == 0
    long_name = post_answer(client, headers, a, 9, label="night", name="x" * 65)
    assert is_refused(long_name)


def test_a_csv_saved_before_an_undo_does_not_bring_the_label_back(page_client, tmp_path):
    project, asked, client, headers = page_client
    a = asked.paths[0]
    stale = tmp_path / "old.csv"
    stale.write_text(f"image,label\n{a},night\n")
    saved = stale.stat().st_mtime
    os.utime(stale, (saved - 60, saved - 60))
    assert post_answer(client, headers, a, 1, label="night").status_code == 200
    assert post_answer(client, headers, a, 2, answer="none").status_code == 200
    assert project.import_csv(stale, log=lambda _: None) == 0 and project.labels() == {}


def test_the_pages_script_is_valid_javascript(page_client, tmp_path):
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    _, _, client, _ = page_client
    page = client.get("/").text
    script = page[page.index("<script>") + len("<script>") : page.index("</script>")]
    (tmp_path / "page.js").write_text(script)
    done = subprocess.run([node, "--check", str(tmp_path / "page.js")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def run_page(client, tmp_path, steps: dict) -> dict:
    """Run the page's script under node with a stand-in for the browser (tests/page_harness.js)."""
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    (tmp_path / "page.html").write_text(client.get("/").text)
    harness = Path(__file__).with_name("page_harness.js")
    done = subprocess.run(
        [node, str(harness), str(tmp_path / "page.html"), json.dumps(steps)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_pages_keys_skip_unsure_undo_progress_and_name_send_what_they_say(page_client, tmp_path):
    project, asked, client, _ = page_client
    steps = {"name": "Ada", "do": [{"key": "1"}, {"key": "2"}, {"key": " "}, {"key": "?"}, {"key": "Backspace"}]}
    seen = run_page(client, tmp_path, steps)
    assert seen["prompts"] == 1 and seen["storage"] == {"dalkit-labeller-name": "Ada"} and seen["who"] == "Ada"
    sent = [(body["image"], body["answer"], body["label"], body["seq"], body["name"]) for body in seen["sent"]]
    p = [card["image"] for card in seen["state"]]
    assert sent == [
        (p[0], "label", "night", 1, "Ada"),
        (p[1], "label", "day", 2, "Ada"),
        (p[2], "skip", "", 3, "Ada"),
        (p[3], "unsure", "", 4, "Ada"),
        (p[3], "none", "", 5, "Ada"),  # the undo: the image's state before the last answer
    ]
    assert all(body["round"] == 1 and body["labeller"] for body in seen["sent"])
    assert seen["progress"] == f"3 of {len(asked.paths)} answered"
    assert [card["done"] for card in seen["state"][:4]] == [True, True, True, False]

    # the name is asked once: a page that finds it in localStorage does not ask; undo of a relabel and a click
    again = {
        "storage": {"dalkit-labeller-name": "Bo"},
        "do": [{"key": "1"}, {"card": 0, "click": "day"}, {"undo": True}],
    }
    seen = run_page(client, tmp_path, again)
    assert seen["prompts"] == 0 and seen["who"] == "Bo"
    assert [(body["answer"], body["label"], body["name"]) for body in seen["sent"]] == [
        ("label", "night", "Bo"),
        ("label", "day", "Bo"),
        ("label", "night", "Bo"),
    ]

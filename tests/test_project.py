"""Labelling projects: the CSV loop, the web page, bad input, and that no label is ever lost."""

from __future__ import annotations

import csv
import itertools
import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dalkit.cli import main
from dalkit.errors import DalkitError
from dalkit.project import Project
from dalkit.project.store import QUESTIONS_CSV
from dalkit.project.web import create_app

SETTINGS = {"model": "small-cnn", "model_options": {"width": 8}, "image_size": 8, "epochs": 15, "budget": 6}


def truth(path: str) -> str:
    return "night" if "dark" in path else "day"


def fill_in(csv_path: Path, label_of=truth) -> None:
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "label": label_of(row["image"])} for row in rows)


def test_the_csv_loop_asks_then_learns_then_asks_for_the_ambiguous_images(folder, tmp_path):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], strategy="margin", **SETTINGS)
    assert len(project.store.images()) == 66
    first = project.ask(budget=20, log=lambda _: None, progress=False)
    assert first.number == 1 and len(set(first.paths)) == 20 and first.guesses == [None] * 20
    questions = tmp_path / "p" / QUESTIONS_CSV
    fill_in(questions, lambda p: "" if "grey" in p else truth(p))  # the person skips the ambiguous ones

    second = project.ask(log=lambda _: None, progress=False)  # imports the filled-in CSV first
    labelled = project.labels()
    assert len(labelled) == len([p for p in first.paths if "grey" not in p])
    assert all(label == truth(path) for path, label in labelled.items())
    assert not set(second.paths) & set(labelled)
    # margin sampling after learning dark vs bright: the mid-grey images are the least certain
    assert sum("grey" in p for p in second.paths) >= 5
    assert (tmp_path / "p" / "model.pt").is_file()

    predicted = project.predictions()  # the round-2 model, trained on dark vs bright
    assert len(predicted) == 66 and all(predicted[p][0] == truth(p) for p in predicted if "grey" not in p)

    fill_in(questions)
    project.import_csv(questions)
    rounds = project.rounds()
    assert [r["asked"] for r in rounds] == [20, 6]
    assert rounds[1]["labelled"] == 6 and rounds[1]["agreement"] is not None


def test_labels_survive_reopening_and_corrections_keep_history(folder, tmp_path):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    assert project.record_labels([("dark00.png", "day")], source="web") == 1
    assert project.record_labels([("dark00.png", "day")], source="web") == 0  # the same label again: nothing new
    project.record_labels([("dark00.png", "night")], source="web")
    project.close()

    reopened = Project.open(tmp_path / "p")
    assert reopened.labels() == {"dark00.png": "night"}
    (image_id,) = [i for i, p in reopened.store.images() if p == "dark00.png"]
    assert [label for label, _, _ in reopened.store.label_history(image_id)] == ["day", "night"]
    assert reopened.settings.budget == 6 and reopened.settings.classes == ["night", "day"]


@pytest.mark.parametrize(
    "content, words",
    [
        ("picture,label\ndark00.png,night\n", "'image' and 'label' columns"),
        ("image,label\ndark00.png,night\ndark01.png,dusk\n", "'dusk' (for dark01.png) is not a class"),
        ("image,label\ndark00.png,night\nnope.png,night\n", "'nope.png' is not in this project"),
        ("image,label\ndark00.png,night\ndark00.png,day\n", "line 3"),
        ("image,label,model_guess\ndark00.png,night,day\ndark01.png\n", "fewer cells"),
        (b"image,label\n\xff\xfe,night\n", "not a readable UTF-8 CSV"),
    ],
)
def test_a_broken_csv_is_one_sentence_and_records_nothing(folder, tmp_path, content, words):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    project.record_labels([("dark05.png", "night")], source="web")
    bad = tmp_path / "labels.csv"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DalkitError, match=words.replace("(", r"\(").replace(")", r"\)")) as error:
        project.import_csv(bad)
    assert len(str(error.value).splitlines()) == 1
    assert project.labels() == {"dark05.png": "night"}


def test_a_spreadsheet_csv_with_semicolons_and_a_byte_order_mark_is_read(folder, tmp_path):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    saved = tmp_path / "labels.csv"
    saved.write_bytes("\ufeffimage;label;model_guess\r\ndark00.png;night;\r\nmore/bright03.png;day;night\r\n".encode())
    assert project.import_csv(saved) == 2
    assert project.labels() == {"dark00.png": "night", "more/bright03.png": "day"}


def test_a_filled_in_csv_is_imported_before_it_is_replaced(folder, tmp_path):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    project.ask(log=lambda _: None, progress=False)
    fill_in(tmp_path / "p" / QUESTIONS_CSV, lambda p: "dusk")  # a broken answer: nothing is replaced
    with pytest.raises(DalkitError, match="'dusk'"):
        project.ask(log=lambda _: None, progress=False)
    assert project.store.last_round() == 1 and "dusk" in (tmp_path / "p" / QUESTIONS_CSV).read_text()


def test_unreadable_images_are_left_out_not_fatal(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"not an image")
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    lines = []
    asked = project.ask(budget=66, log=lines.append, progress=False)
    assert "broken.png" not in asked.paths and any("broken.png" in line for line in lines)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"classes": ["cat"]}, "at least two distinct"),
        ({"classes": ["cat", "cat"]}, "at least two distinct"),
        ({"budget": 0}, "--budget"),
        ({"strategy": "nope"}, "unknown strategy"),
    ],
)
def test_bad_project_settings_are_refused(folder, tmp_path, kwargs, words):
    options = {"classes": ["night", "day"], **SETTINGS, **kwargs}
    with pytest.raises(DalkitError, match=words):
        Project.create(tmp_path / "p", folder, **options)
    assert not (tmp_path / "p").exists()


def test_a_folder_without_images_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DalkitError, match="holds no image file"):
        Project.create(tmp_path / "p", tmp_path / "empty", ["a", "b"])
    assert not (tmp_path / "p").exists()


def request(client: TestClient, path: str, body: dict | None = None) -> tuple[int, bytes]:
    """GET `path`, or POST `body` as the page does: with its CSRF token, and a label naming the page's round,
    labeller and the next sequence number."""
    if body is None:
        response = client.get(path)
    else:
        if path == "/label":
            body = {"round": client.page_round, "labeller": "test", "seq": next(client.seq), **body}
        response = client.post(path, json=body, headers={"X-CSRF-Token": client.app.state.csrf_token})
    return response.status_code, response.content


def web_client(project: Project) -> TestClient:
    client = TestClient(create_app(project), base_url="http://127.0.0.1:8765", raise_server_exceptions=False)
    client.page_round, client.seq = project.store.last_round(), itertools.count(1)  # what the page would send
    return client


def wait_for_ask(client: TestClient, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/status.json").json()["job"]["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_web_page_shows_the_asked_images_and_stores_each_click(folder, tmp_path):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    asked = project.ask(log=lambda _: None, progress=False)
    base = web_client(project)
    status, page = request(base, "/")
    assert status == 200 and all(path.encode() in page for path in asked.paths)
    status, answer = request(base, "/label", {"image": asked.paths[0], "label": truth(asked.paths[0])})
    assert status == 200 and json.loads(answer)["labelled"][truth(asked.paths[0])] == 1
    status, answer = request(base, "/label", {"image": asked.paths[1], "label": "dusk"})
    assert status == 400 and "not a class" in json.loads(answer)["error"]
    (image_id,) = [i for i, p in project.store.images() if p == asked.paths[0]]
    status, image = request(base, f"/image/{image_id}")
    assert status == 200 and image == (folder / asked.paths[0]).read_bytes()
    assert request(base, "/image/..%2F..%2Fetc%2Fpasswd")[0] == 404
    status, _ = request(base, "/ask", {})
    wait_for_ask(base)  # the round is chosen in the background
    assert status == 200 and project.store.last_round() == 2
    assert Project.open(tmp_path / "p").labels() == {asked.paths[0]: truth(asked.paths[0])}


def test_the_cli_runs_a_project_end_to_end(folder, tmp_path, capsys):
    directory = str(tmp_path / "p")
    create = ["project", "create", directory, "--images", str(folder), "--classes", "night,day", "--model"]
    assert main([*create, "small-cnn", "--image-size", "8", "--epochs", "2", "--budget", "4"]) == 0
    assert main(["project", "ask", directory]) == 0
    fill_in(tmp_path / "p" / QUESTIONS_CSV)
    assert main(["project", "import", directory, str(tmp_path / "p" / QUESTIONS_CSV)]) == 0
    assert main(["project", "status", directory]) == 0
    assert main(["project", "export", directory]) == 0
    out = capsys.readouterr().out
    assert "4 label(s) recorded" in out and "4 of 66 images labelled" in out
    exported = list(csv.DictReader((tmp_path / "p" / "labels.csv").open()))
    labelled = [row for row in exported if row["label"]]
    assert len(exported) == 66 and len(labelled) == 4 and all(row["label"] == truth(row["image"]) for row in labelled)
    assert all(row["prediction"] == "" for row in exported)  # only a random round so far: no model yet
    assert main(["project", "ask", str(tmp_path / "nothing")]) == 2
    assert "holds no dalkit project" in capsys.readouterr().err

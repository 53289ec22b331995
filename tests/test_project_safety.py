"""Labelling projects made safe (issue 15): the database is the one source of truth, rounds never collide,
only regular files inside the image folder are used, and the project's files are written and read safely."""

from __future__ import annotations

import csv
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from test_project import SETTINGS, fill_in, truth

from dalkit.cli import main
from dalkit.data.folder import read_image
from dalkit.errors import DalkitError
from dalkit.project import Project
from dalkit.project.store import MODEL_FILE, QUESTIONS_CSV

QUIET = {"log": lambda _: None, "progress": False}


def image_ids(project: Project) -> dict[str, int]:
    return {path: image_id for image_id, path in project.store.images()}


# -- defect 3: a stale CSV never overrides a newer label; rounds are made in one transaction under a lock -----


def test_a_stale_csv_row_never_overrides_a_label_given_after_the_file_was_saved(folder, tmp_path, capsys):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    asked = project.ask(**QUIET)
    questions = tmp_path / "p" / QUESTIONS_CSV
    fill_in(questions)  # the person fills in the CSV ...
    saved = os.stat(questions).st_mtime
    os.utime(questions, (saved - 60, saved - 60))  # ... a minute ago,
    wrong = "day" if truth(asked.paths[0]) == "night" else "night"
    project.record_labels([(asked.paths[0], wrong)], source="web")  # then corrects one image on the web page
    capsys.readouterr()

    recorded = project.import_csv(questions)  # the stale file is imported again (as a failed `ask` used to)

    assert project.labels()[asked.paths[0]] == wrong  # the newer web label is kept
    assert recorded == len(asked.paths) - 1
    said = capsys.readouterr().out.strip()
    assert len(said.splitlines()) == 1 and asked.paths[0] in said and "after" in said


def test_a_second_concurrent_ask_refuses_with_one_sentence(folder, tmp_path, monkeypatch):
    Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    inside, release = threading.Event(), threading.Event()
    read_images = Project.read_images

    def slow_read(self):
        inside.set()
        assert release.wait(60)
        return read_images(self)

    monkeypatch.setattr(Project, "read_images", slow_read)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(Project.open(tmp_path / "p").ask(**QUIET)))
    worker.start()
    try:
        assert inside.wait(60)
        monkeypatch.setattr(Project, "read_images", read_images)
        with pytest.raises(DalkitError, match="another `ask`") as error:
            Project.open(tmp_path / "p").ask(**QUIET)
        assert len(str(error.value).splitlines()) == 1
    finally:
        release.set()
        worker.join(120)
    assert len(first) == 1 and Project.open(tmp_path / "p").store.last_round() == 1


def test_a_round_leaves_out_every_image_labelled_while_it_was_chosen(folder, tmp_path, monkeypatch):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    snapshot = Project.pool

    def snapshot_then_label(self, data):
        pool = snapshot(self, data)  # dalkit has taken the labels it trains on; meanwhile a person labels 50 images
        Project.open(self.directory).record_labels([(p, truth(p)) for p in data.paths[:50]], source="web")
        return pool

    monkeypatch.setattr(Project, "pool", snapshot_then_label)
    asked = project.ask(**QUIET)
    labelled = project.labels()
    in_round = [path for path in Project.open(tmp_path / "p").labels() if path in asked.paths]
    assert len(labelled) == 50 and not in_round
    rows = project.store.questions(asked.number)
    assert not {image_id for image_id, _, _ in rows} & {image_ids(project)[p] for p in labelled}
    assert len(rows) == len(asked.paths) and len(asked.paths) <= 6


# -- defect 5: only regular files inside the image folder are registered -------------------------------------


def test_links_that_leave_the_image_folder_are_not_registered(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside / "secret.png")
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    (folder / "alias.png").symlink_to(folder / "dark00.png")  # a link that stays inside is fine
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    paths = set(image_ids(project))
    assert "passwd.png" not in paths and "linked/secret.png" not in paths
    assert "alias.png" in paths and len(paths) == 67


# -- defect 6: files ----------------------------------------------------------------------------------------


def test_model_and_questions_are_replaced_whole_or_not_at_all(folder, tmp_path, monkeypatch):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    project.ask(**QUIET)
    fill_in(tmp_path / "p" / QUESTIONS_CSV)
    project.ask(**QUIET)  # a trained round: model.pt exists
    model, questions = tmp_path / "p" / MODEL_FILE, tmp_path / "p" / QUESTIONS_CSV
    before = model.read_bytes(), questions.read_bytes()

    def crash_while_writing(obj, file, *args, **kwargs):
        file.write(b"half a model")  # the temporary file's handle
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_while_writing)
    with pytest.raises(OSError, match="disk full"):
        project.ask(**QUIET)
    assert model.read_bytes() == before[0] and questions.read_bytes() == before[1]
    assert sorted(p.name for p in (tmp_path / "p").iterdir() if p.name.endswith((".tmp", ".pt", ".csv"))) == [
        MODEL_FILE,
        QUESTIONS_CSV,
    ]


def test_sixteen_bit_exif_rotated_and_cmyk_images_are_read_faithfully(tmp_path):
    ramp = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    grey = read_image(tmp_path / "deep.png", 8, "L")
    assert len(np.unique(grey)) > 32 and grey.max() >= 240  # scaled, not clipped to two values
    assert np.array_equal(read_image(tmp_path / "deep.png", 8, "RGB")[..., 0], grey)

    half = np.zeros((8, 8, 3), np.uint8)
    half[:, 4:] = 255  # stored: dark left half, bright right half
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(half).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    shown = read_image(tmp_path / "rotated.jpg", 8, "L").astype(int)
    assert shown[:3].mean() < 60 and shown[-3:].mean() > 190  # displayed: dark top, bright bottom

    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "print.jpg")  # pure red in print colours
    red = read_image(tmp_path / "print.jpg", 8, "RGB").astype(int)
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 60
    assert read_image(tmp_path / "print.jpg", 8, "L").shape == (8, 8)


def test_a_name_with_a_leading_space_goes_through_dalkits_own_csv(folder, tmp_path):
    grey = np.full((8, 8, 3), 30, np.uint8)
    Image.fromarray(grey).save(folder / " lead.png")
    Image.fromarray(grey).save(folder / "trail .png")
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **{**SETTINGS, "budget": 68})
    project.ask(**QUIET)
    fill_in(tmp_path / "p" / QUESTIONS_CSV, lambda p: "night" if p.strip() in ("lead.png", "trail .png") else truth(p))
    assert project.import_csv(tmp_path / "p" / QUESTIONS_CSV) == 68
    assert project.labels()[" lead.png"] == "night" and project.labels()["trail .png"] == "night"


def test_export_neutralises_spreadsheet_formulas_and_reads_back(folder, tmp_path):
    names = ["=HYPERLINK(1).png", "+1.png", "-1.png", "@SUM.png"]
    for name in names:
        Image.fromarray(np.full((8, 8, 3), 30, np.uint8)).save(folder / name)
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    project.record_labels([(name, "night") for name in names], source="web")
    exported = project.export_csv(tmp_path / "labels.csv")
    cells = [row["image"] for row in csv.DictReader(exported.open(newline=""))]
    assert not [cell for cell in cells if cell[:1] in "=+-@"]
    assert {f"'{name}" for name in names} <= set(cells)
    fresh = Project.create(tmp_path / "q", folder, ["night", "day"], **SETTINGS)
    assert fresh.import_csv(exported) == 4 and fresh.labels() == dict.fromkeys(names, "night")


def test_a_huge_csv_is_refused_before_it_is_read(folder, tmp_path):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as handle:
        handle.write(b"image,label\n")
        handle.truncate(2**30)  # 1 GB, sparse: nothing is written to disk
    with pytest.raises(DalkitError, match=r"1\.0 GB") as error:
        project.import_csv(huge)
    assert len(str(error.value).splitlines()) == 1 and "MB" in str(error.value)


@pytest.mark.parametrize("budget", ["-2", "0"])
def test_ask_refuses_a_budget_below_one_in_one_sentence(folder, tmp_path, capsys, budget):
    Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    assert main(["project", "ask", str(tmp_path / "p"), "--budget", budget]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--budget" in error
    assert Project.open(tmp_path / "p").store.last_round() == 0

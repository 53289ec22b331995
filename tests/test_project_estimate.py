"""The labelling project's accuracy estimate (issue 13): cross-validation for a frozen pretrained encoder, the
previous round's hit rate for a model trained from scratch, stored with the round and shown by `status` (no torch),
and projects made before the estimate still open."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from test_project import SETTINGS, truth
from test_project_tools import QUIET, run_cli
from test_project_web import make_client

from dalkit.cli import main
from dalkit.project import Project
from dalkit.project.estimate import CROSS_VALIDATION, HIT_RATE, stratified_folds
from dalkit.project.store import DATABASE

# the 60 clear images of the `folder` fixture: 30 dark (night), 30 bright (day); 6 grey ones stay unlabelled
CLEAR = [f"dark{k:02d}.png" for k in range(30)] + [f"more/bright{k:02d}.png" for k in range(30)]


@pytest.fixture
def pretrained(tmp_path) -> dict:
    """Project settings for the bundled frozen EfficientNet-Lite0, at 32 px to stay quick on a CPU."""
    options = {"resolution": 32, "cache_dir": str(tmp_path / "cache")}
    return {"model": "efficientnet-lite0", "model_options": options, "image_size": 16, "epochs": 50, "budget": 6}


def asked_with(folder, directory, settings: dict, labels: dict[str, str]) -> Project:
    """A project over `folder` with `labels` given, after one trained round."""
    project = Project.create(directory, folder, ["night", "day"], **settings)
    project.record_labels(list(labels.items()), source="test")
    project.ask(**QUIET)
    return project


def test_cross_validation_on_separable_images_is_high_and_shown_by_status(folder, tmp_path, pretrained, capsys):
    project = asked_with(folder, tmp_path / "p", pretrained, {p: truth(p) for p in CLEAR})
    estimate = project.store.latest_estimate()
    assert (estimate.method, estimate.folds, estimate.labels, estimate.round) == (CROSS_VALIDATION, 5, 60, 1)
    assert estimate.accuracy >= 0.9
    assert estimate.scored is None  # no image was asked at random: every label is scored, and the text says so
    line = (
        f"estimated accuracy {estimate.accuracy:.0%} (5-fold cross-validation on 60 labels, scored on all of them: "
        "most were asked as hard ones, so the figure is pessimistic, round 1)"
    )
    assert main(["project", "status", str(project.directory)]) == 0
    assert line in capsys.readouterr().out
    assert make_client(project).get("/status.json").json()["estimate"] == line

    answer = run_cli(  # status reads the stored estimate: no model, no torch
        "import json, sys\nfrom dalkit.cli import main\n"
        f"main(['project', 'status', {str(project.directory)!r}])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules}))\n"
    )
    assert answer["torch"] is False


def test_cross_validation_scores_only_the_images_asked_at_random(folder, tmp_path, pretrained, capsys):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **{**pretrained, "budget": 12})
    first = project.ask(**QUIET)  # nothing labelled: a random sample, which the estimate will be scored on
    project.record_labels([(p, truth(p)) for p in first.paths], source="test")
    second = project.ask(**QUIET)
    project.record_labels([(p, truth(p)) for p in second.paths], source="test")
    project.ask(**QUIET)
    estimate = project.store.latest_estimate()
    assert project.store.asked_at_random() == {project.store.image_id(p) for p in first.paths}
    assert (estimate.labels, estimate.scored, estimate.round) == (24, 12, 3)
    assert main(["project", "status", str(project.directory)]) == 0
    assert "on 24 labels, scored on the 12 asked at random, round 3)" in capsys.readouterr().out


def test_cross_validation_on_random_labels_is_near_chance(folder, tmp_path, pretrained):
    # half of the dark and half of the bright images are 'night', at random: nothing visible tells the classes apart
    # (cross-validation on random labels runs a little under chance: a fold's images leave the opposite labels in
    # the images it trains on)
    rng = np.random.default_rng(0)
    coin = [name for _ in range(2) for name in rng.permutation(["night", "day"] * 15)]
    project = asked_with(folder, tmp_path / "p", pretrained, dict(zip(CLEAR, coin)))
    estimate = project.store.latest_estimate()
    assert estimate.method == CROSS_VALIDATION and abs(estimate.accuracy - 0.5) <= 0.2


def test_too_few_labels_of_a_class_is_said_not_guessed(folder, tmp_path, pretrained, capsys):
    project = asked_with(folder, tmp_path / "p", pretrained, {"dark00.png": "night", **{p: "day" for p in CLEAR[30:]}})
    assert project.store.latest_estimate().accuracy is None
    assert main(["project", "status", str(project.directory)]) == 0
    assert (
        "cross-validation needs at least 2 labelled images of each class (31 labels so far)" in capsys.readouterr().out
    )


def test_a_model_from_scratch_is_judged_by_the_previous_rounds_guesses(folder, tmp_path, capsys):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    asked = project.ask(budget=10, **QUIET)  # random: no model, no estimate
    assert project.store.latest_estimate() is None
    for number in (2, 3):
        project.record_labels([(p, truth(p)) for p in asked.paths], source="test")
        asked = project.ask(**QUIET)
        estimate = project.store.latest_estimate()
        assert estimate.method == HIT_RATE and estimate.round == number
    assert estimate.model_round == 2 and estimate.labels == 6  # round 2's images, guessed before their labels
    assert estimate.accuracy == project.rounds()[1]["agreement"]
    assert main(["project", "status", str(project.directory)]) == 0
    out = capsys.readouterr().out
    assert f"estimated accuracy {estimate.accuracy:.0%} (the round 2 model's guesses on the 6 images" in out
    assert "labelled since, round 3; they were asked as hard ones, so the figure is pessimistic" in out


def test_a_project_from_before_the_estimate_opens_and_shows_status(folder, tmp_path, capsys):
    project = asked_with(folder, tmp_path / "p", SETTINGS, {p: truth(p) for p in CLEAR[::4]})
    project.close()
    with sqlite3.connect(tmp_path / "p" / DATABASE) as db:  # the database as projects made before had it
        db.execute("DROP TABLE estimates")
    assert main(["project", "status", str(tmp_path / "p")]) == 0
    assert "no accuracy estimate yet" in capsys.readouterr().out
    reopened = Project.open(tmp_path / "p")
    reopened.ask(**QUIET)  # the next round stores one
    assert reopened.store.latest_estimate().round == 2


def test_folds_spread_every_class_and_shrink_with_few_labels():
    labels = np.array([0] * 12 + [1] * 7 + [2] * 3)
    folds = stratified_folds(labels, 3, seed=0)
    assert folds.max() == 2  # the smallest class has 3 labels: 3 folds
    assert all(set(folds[labels == c]) == {0, 1, 2} for c in range(3))
    assert np.bincount(folds).tolist() in ([8, 7, 7], [7, 8, 7], [7, 7, 8])
    assert stratified_folds(np.array([0] * 20 + [1] * 20), 2, seed=0).max() == 4
    assert stratified_folds(np.array([0] * 20 + [1]), 2, seed=0) is None
    assert stratified_folds(np.array([0] * 20), 2, seed=0) is None  # a class without labels

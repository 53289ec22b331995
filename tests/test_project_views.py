"""The labelling page's two views (issue 15): the round's images in a grid or one by one, and the labelled-set
view, filtered by class, where a click corrects a label. Server side, through Starlette's TestClient; the
browser test (test_project_browser.py) drives the same page in chromium."""

from __future__ import annotations

import re

from test_project import truth
from test_project_tools import history, post_answer


def cards(page: str) -> list[tuple[str, str, str]]:
    """(image, round, label) of each card of a page, in order."""
    return re.findall(
        r'class="card[^"]*" data-image="([^"]+)" data-round="(\d+)" data-answer="\w+" data-label="([^"]*)"', page
    )


def label_all(client, headers, paths: list[str]) -> None:
    for seq, path in enumerate(paths, 1):
        assert post_answer(client, headers, path, seq, label=truth(path), name="Ada").status_code == 200


def test_the_labelled_view_lists_every_labelled_image_latest_first_and_filters_by_class(page_client):
    project, asked, client, headers = page_client
    label_all(client, headers, asked.paths[:4])
    everything = client.get("/labelled")
    assert everything.status_code == 200 and 'data-view="labelled"' in everything.text
    shown = cards(everything.text)
    assert [image for image, _, _ in shown] == asked.paths[:4][::-1]  # the latest labelled first
    assert all(number == "0" for _, number, _ in shown)  # round 0: a correction, whatever round asked
    assert {image: label for image, _, label in shown} == {p: truth(p) for p in asked.paths[:4]}
    assert "by Ada" in everything.text and 'data-answer="skip"' not in everything.text
    for name in ("night", "day"):
        page = client.get("/labelled", params={"class": name}).text
        assert sorted(image for image, _, _ in cards(page)) == sorted(p for p in asked.paths[:4] if truth(p) == name)
    round_page = client.get("/").text
    assert 'data-view="queue"' in round_page and 'href="/labelled"' in round_page and 'id="mode"' in round_page


def test_a_correction_changes_any_labelled_image_and_records_who_made_it(page_client):
    project, asked, client, headers = page_client
    a, b = asked.paths[:2]
    label_all(client, headers, [a])
    other = "day" if truth(a) == "night" else "night"
    body = {"image": a, "round": 0, "label": other, "labeller": "view1", "seq": 1, "name": "Bo"}
    assert client.post("/label", json=body, headers=headers).status_code == 200
    assert project.labels() == {a: other} and history(project, a) == [(truth(a), "web:Ada"), (other, "web:Bo")]
    assert client.post("/label", json=body, headers=headers).json()["duplicate"] is True  # a retry: once
    unlabelled = client.post("/label", json={**body, "image": b, "seq": 2}, headers=headers)
    assert unlabelled.status_code == 409 and "no label to correct" in unlabelled.json()["error"]
    skip = client.post("/label", json={**body, "answer": "skip", "seq": 3}, headers=headers)
    assert skip.status_code == 409 and project.labels() == {a: other}  # a correction is a class, not a skip
    assert b not in project.labels() and len(history(project, a)) == 2


def test_the_labelled_view_refuses_an_unknown_class_and_pages_through_a_large_set(page_client, monkeypatch):
    from dalkit.project import page

    project, asked, client, headers = page_client
    unknown = client.get("/labelled", params={"class": "dusk"})
    assert unknown.status_code == 404 and "night, day" in unknown.json()["error"]
    assert client.get("/labelled", params={"start": "-1"}).status_code == 400
    monkeypatch.setattr(page, "LABELLED_PER_PAGE", 2)
    label_all(client, headers, asked.paths[:5])
    pages = [cards(client.get("/labelled", params={"start": start}).text) for start in (0, 2, 4)]
    assert [len(shown) for shown in pages] == [2, 2, 1]
    assert sorted(image for shown in pages for image, _, _ in shown) == sorted(asked.paths[:5])
    assert "start=2" in client.get("/labelled").text and "start=" not in client.get("/labelled?start=4").text

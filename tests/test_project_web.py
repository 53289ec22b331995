"""The labelling page's server (issue 15): label requests carry image, round and sequence; `ask` runs in the
background; only this computer's pages may label; every error is a JSON answer; only regular files inside the
image folder are served. Driven through Starlette's TestClient, on tiny PNG folders the tests make."""

from __future__ import annotations

import re
import threading
import time

import pytest
from starlette.testclient import TestClient
from test_project import SETTINGS, truth

from dalkit.project import Project

BASE = "http://127.0.0.1:8765"


def make_client(project: Project, host: str = "127.0.0.1", port: int = 8765, base: str = BASE) -> TestClient:
    from dalkit.project.web import create_app

    return TestClient(create_app(project, host=host, port=port), base_url=base, raise_server_exceptions=False)


def csrf(client: TestClient) -> dict:
    """The header the page sends with every change, read from the page as a browser script would."""
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    return {"X-CSRF-Token": found.group(1) if found else ""}


@pytest.fixture
def labelling(folder, tmp_path):
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    asked = project.ask(log=lambda _: None, progress=False)
    client = make_client(project)
    return project, asked, client, csrf(client)


def image_id(project: Project, path: str) -> int:
    return dict((p, i) for i, p in project.store.images())[path]


def is_json_error(response, code: int) -> bool:
    return (
        response.status_code == code
        and response.headers["content-type"].startswith("application/json")
        and isinstance(response.json().get("error"), str)
        and "Traceback" not in response.text
    )


# -- defect 1: a label names its image, its round and a sequence number ---------------------------------------


def test_a_label_for_an_image_not_in_its_round_is_refused_and_a_retry_is_recorded_once(labelling):
    project, asked, client, headers = labelling
    other = next(p for _, p in project.store.images() if p not in asked.paths)
    refused = client.post(
        "/label", json={"image": other, "round": 1, "label": "night", "labeller": "a", "seq": 1}, headers=headers
    )
    assert is_json_error(refused, 409) and "round 1" in refused.json()["error"]
    assert project.labels() == {}

    first = {"image": asked.paths[0], "round": 1, "label": "night", "labeller": "a", "seq": 2}
    assert client.post("/label", json=first, headers=headers).status_code == 200
    assert client.post("/label", json={**first, "label": "day", "seq": 3}, headers=headers).status_code == 200
    retried = client.post("/label", json=first, headers=headers)  # seq 2 arrives again, after seq 3
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
    history = project.store.label_history(image_id(project, asked.paths[0]))
    assert [label for label, _, _ in history] == ["night", "day"]
    assert project.labels() == {asked.paths[0]: "day"}

    for missing in ("round", "seq", "labeller"):
        body = {key: value for key, value in {**first, "seq": 9}.items() if key != missing}
        assert is_json_error(client.post("/label", json=body, headers=headers), 400)


def test_the_page_names_the_round_and_a_labeller_for_its_requests(labelling):
    project, asked, client, _ = labelling
    page = client.get("/").text
    assert 'data-round="1"' in page and "labeller" in page and "seq" in page
    assert "https://" not in page and "http://" not in page  # nothing from a CDN: the page works offline


# -- defect 2: `ask` runs in the background, one at a time; no request waits for another ---------------------


def test_ask_runs_in_the_background_and_no_request_waits_for_it(labelling, monkeypatch):
    project, asked, client, headers = labelling
    inside, release = threading.Event(), threading.Event()
    read_images = Project.read_images

    def slow_read(self):
        inside.set()
        assert release.wait(60)
        return read_images(self)

    monkeypatch.setattr(Project, "read_images", slow_read)
    try:
        started = client.post("/ask", json={}, headers=headers)
        assert started.status_code == 200 and started.json()["job"]["state"] == "running"
        assert inside.wait(30)
        assert client.get("/status.json").json()["job"]["state"] == "running"
        assert client.get("/").status_code == 200
        body = {"image": asked.paths[0], "round": 1, "label": truth(asked.paths[0]), "labeller": "a", "seq": 1}
        assert client.post("/label", json=body, headers=headers).status_code == 200
        again = client.post("/ask", json={}, headers=headers)
        assert is_json_error(again, 409) and "already" in again.json()["error"]
    finally:
        release.set()
    job = wait_for_job(client)
    assert job["state"] == "done" and job["round"] == 2 and job["log"]
    assert project.store.last_round() == 2
    assert asked.paths[0] not in job_paths(project, 2)  # labelled while the round was chosen: left out


def test_a_failed_ask_is_reported_in_the_status(labelling, monkeypatch):
    project, _, client, headers = labelling
    project.record_labels([(p, truth(p)) for _, p in project.store.images()], source="web")
    assert client.post("/ask", json={}, headers=headers).status_code == 200
    job = wait_for_job(client)
    assert job["state"] == "failed" and "every image of the project is labelled" in job["error"]


def wait_for_job(client: TestClient, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get("/status.json").json()["job"]
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("the background ask did not finish")


def job_paths(project: Project, round_number: int) -> list[str]:
    paths = dict(project.store.images())
    return [paths[i] for i, _, _ in project.store.questions(round_number)]


# -- defect 4: this computer's pages only; every error a JSON answer -----------------------------------------


def test_a_foreign_host_a_foreign_origin_and_a_missing_token_are_refused(labelling):
    project, asked, client, headers = labelling
    body = {"image": asked.paths[0], "round": 1, "label": "night", "labeller": "a", "seq": 1}
    foreign_host = client.get("/", headers={"Host": "attacker.example:8765"})  # DNS rebinding
    assert is_json_error(foreign_host, 400) and "Host" in foreign_host.json()["error"]
    assert is_json_error(client.post("/label", json=body), 403)  # no CSRF token
    assert is_json_error(client.post("/label", json=body, headers={"X-CSRF-Token": "guess"}), 403)
    foreign = client.post("/label", json=body, headers={**headers, "Origin": "http://attacker.example"})
    assert is_json_error(foreign, 403) and "Origin" in foreign.json()["error"]
    assert is_json_error(client.post("/ask", json={}), 403)
    assert project.labels() == {} and project.store.last_round() == 1
    same_origin = client.post("/label", json=body, headers={**headers, "Origin": BASE})
    assert same_origin.status_code == 200 and project.labels() == {asked.paths[0]: "night"}
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200


@pytest.mark.parametrize(
    "content, code",
    [
        (b"[]", 400),
        (b"[" * 30_000 + b"]" * 30_000, 400),  # deep, yet under the size limit
        (b"not json", 400),
        (b'{"image": [], "round": 1, "label": "night", "labeller": "a", "seq": 1}', 400),
        (b'{"image": "x", "round": "1", "label": "night", "labeller": "a", "seq": 1}', 400),
        (b'{"image": "x", "round": 1, "label": "night", "labeller": "a", "seq": true}', 400),
        (b"\xff\xfe", 400),
    ],
)
def test_bad_bodies_are_json_answers(labelling, content, code):
    _, _, client, headers = labelling
    response = client.post("/label", content=content, headers={**headers, "Content-Type": "application/json"})
    assert is_json_error(response, code)


def test_sizes_and_odd_requests_are_refused_with_json(labelling):
    _, _, client, headers = labelling
    huge = client.post("/label", content=b"{}", headers={**headers, "Content-Length": str(100 * 2**20)})
    assert is_json_error(huge, 413)  # refused on the header, before any of the body is read
    assert is_json_error(client.post("/label", content=b"{}", headers={**headers, "Content-Length": "-1"}), 400)
    assert is_json_error(client.get("/", headers={"X-Padding": "x" * 20_000}), 431)
    assert is_json_error(client.get("/image/²"), 404)
    assert is_json_error(client.get("/image/99999"), 404)
    assert is_json_error(client.get("/nowhere"), 404)
    assert is_json_error(client.put("/label", json={}, headers=headers), 405)


def test_serving_beyond_this_computer_needs_the_printed_token(labelling):
    from dalkit.project.web import listen

    project, asked, _, _ = labelling
    listening = listen(project, "0.0.0.0", 0)
    try:
        token = listening.app.state.access_token
        assert len(token) >= 32 and listening.url.endswith(f"/?token={token}")
        assert "0.0.0.0" in listening.warning and "token" in listening.warning
        client = TestClient(listening.app, base_url="http://192.168.1.5:8765", raise_server_exceptions=False)
        assert is_json_error(client.get("/"), 403) and is_json_error(client.get("/status.json"), 403)
        assert is_json_error(client.get("/?token=wrong"), 403)
        assert client.get(f"/?token={token}").status_code == 200  # sets a cookie: the page's own requests pass
        assert client.get(f"/image/{image_id(project, asked.paths[0])}").status_code == 200
    finally:
        listening.socket.close()
    quiet = listen(project, "127.0.0.1", 0)
    try:
        assert "token" not in quiet.url and quiet.warning is None
        assert quiet.app.state.access_token is None
    finally:
        quiet.socket.close()


# -- defect 5: only regular files inside the image folder are served -----------------------------------------


def test_a_link_that_leaves_the_image_folder_is_not_served(labelling, folder):
    project, asked, client, _ = labelling
    victim = folder / asked.paths[0]
    victim.unlink()
    victim.symlink_to("/etc/passwd")  # after registration, the file becomes a link out of the folder
    response = client.get(f"/image/{image_id(project, asked.paths[0])}")
    assert is_json_error(response, 404) and b"root:" not in response.content
    good = client.get(f"/image/{image_id(project, asked.paths[1])}")
    assert good.status_code == 200 and good.headers["content-type"] == "image/png"

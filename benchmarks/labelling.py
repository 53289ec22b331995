"""What the labelling benchmarks share (labelling_load.py, labelling_kill.py, labelling_latency.py): a project
of tiny generated images, `dalkit project serve` in its own process, an HTTP client that labels like the page,
the project's database read with plain SQLite, and headless chromium."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"
CLASSES = ["night", "day"]
# A project that trains in seconds: 8x8 images, a narrow small CNN, two epochs.
SETTINGS = {"model": "small-cnn", "model_options": {"width": 8}, "image_size": 8, "epochs": 2}


def make_project(directory: Path, images: int, budget: int) -> Path:
    """`images` dark or bright 8x8 PNGs and a project over them whose first round asks for `budget` of them."""
    from dalkit.project import Project

    root = directory / "images"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(images):
        level = 40 if k % 2 else 215
        pixels = np.clip(level + rng.integers(-20, 21, size=(8, 8, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{CLASSES[k % 2 == 0]}-{k:05d}.png")
    project = Project.create(directory / "project", root, CLASSES, budget=budget, **SETTINGS)
    project.ask(log=lambda _: None, progress=False)
    project.close()
    return directory / "project"


def opened(project: Path) -> closing:
    """The project, opened (closed at the end of the `with`)."""
    from dalkit.project import Project

    return closing(Project.open(project))


def truth(path: str) -> str:
    return path.split("-")[0]


def dalkit(*args: str, **popen) -> subprocess.Popen:
    """`dalkit ARGS` of this checkout in a new process."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dalkit.cli", *args], env=env, text=True, **popen)


class Server:
    """`dalkit project serve DIR --port 0` in its own process; `url` is the address it printed."""

    def __init__(self, project: Path) -> None:
        self.process = dalkit("project", "serve", str(project), "--port", "0", stdout=subprocess.PIPE)
        line = self.process.stdout.readline()
        found = re.search(r"http://\S+", line)
        if found is None:
            self.kill()
            raise RuntimeError(f"`dalkit project serve` printed {line!r}")
        self.url = found.group(0)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class Labeller:
    """One page's worth of requests on its own keep-alive connection: the CSRF token read from the page, then
    label requests with its own id and sequence numbers. `label` returns True once the server acknowledged."""

    def __init__(self, url: str, name: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.name, self.seq = name, 0
        page = self.get("/")[1].decode()
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def get(self, path: str) -> tuple[int, bytes]:
        """GET `path`; like a browser, once more on a new connection when the server had closed an idle one
        (uvicorn closes keep-alive connections idle for 5 s)."""
        try:
            self.connection.request("GET", path)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.connection.close()
            self.connection.request("GET", path)
            response = self.connection.getresponse()
        return response.status, response.read()

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "X-CSRF-Token": self.csrf}
        self.connection.request("POST", path, body=json.dumps(body), headers=headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def label(self, image: str, label: str, round_number: int = 1) -> bool:
        self.seq += 1
        body = {"image": image, "round": round_number, "label": label, "labeller": self.name, "seq": self.seq}
        status, answer = self.post("/label", {**body, "name": self.name})
        if status != 200:
            raise RuntimeError(f"label {body} was refused: {status} {answer}")
        return True

    def close(self) -> None:
        self.connection.close()


def round_images(project: Path, round_number: int = 1) -> list[str]:
    with connect(project) as db:
        query = "SELECT path FROM questions JOIN images ON images.id = image_id WHERE round = ? ORDER BY rank"
        return [path for (path,) in db.execute(query, (round_number,))]


def connect(project: Path) -> closing[sqlite3.Connection]:
    """The project's database, read with plain SQLite (closed at the end of the `with`)."""
    return closing(sqlite3.connect(project / "project.sqlite", timeout=30))


def integrity(project: Path) -> str:
    with connect(project) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def label_rows(project: Path, source_prefix: str) -> dict[tuple[str, str], int]:
    """(source, image path) -> how many label rows that source gave that image."""
    with connect(project) as db:
        query = (
            "SELECT source, path, COUNT(*) FROM labels JOIN images ON images.id = image_id WHERE source LIKE ? "
            "GROUP BY source, path"
        )
        return {(source, path): n for source, path, n in db.execute(query, (source_prefix + "%",))}


def chromium(width: int = 1280, height: int = 1000):
    """Headless Debian chromium through its chromedriver (apt-get install chromium chromium-driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        raise SystemExit("needs chromium and chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(driver))


def elapsed(start: float) -> float:
    return time.perf_counter() - start

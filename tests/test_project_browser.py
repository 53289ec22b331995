"""The labelling page in a real browser (issue 15): Debian's headless chromium, driven by selenium through
chromedriver, against `dalkit project serve` on a tiny project. Fast keys (50 ms apart), the mouse, undo, skip,
unsure, a reload, one-by-one mode and a correction in the labelled-set view; then the database must hold exactly
the answers given, on the images they were given on, with the labeller's name. Skips when chromium, chromedriver
or selenium is missing (`.ci/run` installs them)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_project import SETTINGS

import dalkit
from dalkit.project import Project

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
CHROMEDRIVER = shutil.which("chromedriver")
KEYS = "1221121221"  # 1: night, 2: day
CLASSES = {"1": "night", "2": "day"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver; .ci/run does)",
    ),
]


@pytest.fixture
def served(folder, tmp_path):
    """`dalkit project serve` on a project whose first round asks for 16 images; yields (project dir, url)."""
    project = Project.create(tmp_path / "p", folder, ["night", "day"], **{**SETTINGS, "budget": 16})
    project.ask(log=lambda _: None, progress=False)
    project.close()
    env = {**os.environ, "PYTHONPATH": str(Path(dalkit.__file__).parents[1]), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "dalkit.cli", "project", "serve", str(tmp_path / "p"), "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = server.stdout.readline()
        found = re.search(r"http://\S+", line)
        assert found, f"`dalkit project serve` printed {line!r}"
        yield tmp_path / "p", found.group(0)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        server.stdout.close()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the browser extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.unhandled_prompt_behavior = "ignore"  # the page's prompt for the labeller's name is the test's to answer
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, seconds: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)


def sent(driver) -> bool:
    """True once the page has no answer waiting to be sent (and none refused)."""
    return (
        driver.execute_script("return queue.length === 0 && !sending") and not driver.find_element("id", "message").text
    )


def press(driver, *keys: str, gap: float = 0.05) -> None:
    from selenium.webdriver import ActionChains

    chain = ActionChains(driver)
    for key in keys:
        chain.send_keys(key).pause(gap)
    chain.perform()


def click(driver, image: str, choice: str) -> None:
    card = driver.find_element("css selector", f'.card[data-image="{image}"]')
    card.find_element("css selector", f'button[data-label="{choice}"], button[data-answer="{choice}"]').click()


def shown_cards(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('.card')].map(c => ({image: c.dataset.image, answer: c.dataset.answer,"
        " label: c.dataset.label, visible: c.offsetParent !== null, current: c.classList.contains('current')}))"
    )


def database(directory: Path) -> dict:
    """What the project's database holds, read with plain SQLite: each image's labels (oldest first) and sources,
    the round's set-aside answers, and how many page requests were recorded."""
    db = sqlite3.connect(directory / "project.sqlite")
    try:
        paths = dict(db.execute("SELECT id, path FROM images"))
        history: dict[str, list[str]] = {}
        for image_id, label in db.execute("SELECT image_id, label FROM labels ORDER BY id"):
            history.setdefault(paths[image_id], []).append(label)
        aside = db.execute(
            "SELECT image_id, answer FROM answers WHERE id IN (SELECT MAX(id) FROM answers GROUP BY image_id, round)"
        )
        return {
            "history": history,
            "sources": {source for (source,) in db.execute("SELECT DISTINCT source FROM labels")},
            "aside": {paths[i]: answer for i, answer in aside if answer},
            "requests": db.execute("SELECT COUNT(*) FROM web_requests").fetchone()[0],
        }
    finally:
        db.close()


def test_fast_keys_mouse_undo_skip_reload_and_corrections_are_recorded_exactly(served, browser):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions

    directory, url = served
    browser.get(url)
    wait(browser, expected_conditions.alert_is_present())  # the labeller's name, asked once
    prompt = browser.switch_to.alert
    prompt.send_keys("Ada")
    prompt.accept()
    order = [card["image"] for card in shown_cards(browser)]
    assert len(order) == 16 and shown_cards(browser)[0]["current"]
    expected = {order[k]: [CLASSES[key]] for k, key in enumerate(KEYS)}

    press(browser, *KEYS)  # 10 label keys, 50 ms apart: each labels the image highlighted when it is pressed
    wait(browser, sent)
    assert browser.find_element("id", "progress").text == "10 of 16 answered"
    tallies = [link.text for link in browser.find_elements("css selector", "nav a[data-tally]")]
    assert tallies == ["labelled (10)", "night (5)", "day (5)"]  # the links' counts follow the labels made

    other = {"night": "day", "day": "night"}
    click(browser, order[10], "day")  # the mouse, on the highlighted image
    click(browser, order[12], "night")  # ... on one further on
    click(browser, order[0], other[expected[order[0]][0]])  # ... and relabelling one already labelled
    expected[order[10]] = ["day"]
    expected[order[0]].append(other[expected[order[0]][0]])
    press(browser, Keys.BACKSPACE)  # undo the relabel
    expected[order[0]].append(expected[order[0]][0])
    browser.find_element("id", "undo").click()  # undo the label of order[12]: unlabelled again
    expected[order[12]] = ["night", ""]
    press(browser, " ", "?")  # skip the highlighted image (order[11]), mark the next (order[12]) unsure
    wait(browser, sent)

    browser.refresh()  # what the page shows now comes from the database; the name is not asked again
    assert [card["image"] for card in shown_cards(browser)][:3] == order[13:]  # unanswered first
    state = {card["image"]: (card["answer"], card["label"]) for card in shown_cards(browser)}
    assert state == {
        **{image: ("label", labels[-1]) for image, labels in expected.items() if labels[-1]},
        order[11]: ("skip", ""),
        order[12]: ("unsure", ""),
        **{image: ("none", "") for image in order[13:]},
    }
    assert browser.find_element("id", "who").text == "Ada"
    assert browser.find_element("id", "progress").text == "13 of 16 answered"

    browser.find_element("id", "mode").click()  # one by one: the highlighted image alone
    visible = [card["image"] for card in shown_cards(browser) if card["visible"]]
    assert visible == [order[13]]
    press(browser, "2")
    expected[order[13]] = ["day"]
    wait(browser, lambda d: [card["image"] for card in shown_cards(d) if card["visible"]] == [order[14]])
    wait(browser, sent)

    browser.get(url.split("?")[0] + "labelled?class=night")  # the labelled set, nights only; correct the first
    nights = [card["image"] for card in shown_cards(browser)]
    assert "\u00b7" not in browser.find_element("tag name", "header").text  # no "round 1 ·" with nothing after it
    assert sorted(nights) == sorted(image for image, labels in expected.items() if labels[-1] == "night")
    click(browser, nights[0], "day")
    expected[nights[0]].append("day")
    wait(browser, sent)

    held = database(directory)
    assert held["history"] == expected
    assert held["sources"] == {"web:Ada"}
    assert held["aside"] == {order[11]: "skip", order[12]: "unsure"}
    assert held["requests"] == 10 + 3 + 2 + 2 + 1 + 1  # keys, clicks, undos, skip and unsure, a key, a correction

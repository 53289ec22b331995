"""Seconds from a key press to the next image on the labelling page (issue 15), in headless chromium, in the grid
and in one-by-one mode; and screenshots of the page in each mode and of the labelled-set view (all of it, and
filtered by a class), saved as PNG into the folder given.

In the page, a capture listener stamps each keydown (`performance.now()`), then waits, frame by frame, until the
newly highlighted card is shown with its image decoded, and stamps the frame after it: that difference is "key
to next image". The time selenium takes from sending the key to seeing that stamp is printed too (it adds the
driver's round trip).

    PYTHONPATH=src python benchmarks/labelling_latency.py SCREENSHOT_DIR [--presses 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from labelling import Server, chromium, make_project

MEASURE = """
window.latencies = [];
window.addEventListener('keydown', event => {
  const start = performance.now(), before = document.querySelector('.card.current');
  const ready = () => {
    const card = document.querySelector('.card.current');
    const image = card && card.querySelector('img');
    if (card && card !== before && card.offsetParent !== null && image.complete && image.naturalWidth > 0)
      requestAnimationFrame(() => window.latencies.push(performance.now() - start));
    else requestAnimationFrame(ready);
  };
  requestAnimationFrame(ready);
}, true);
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("screenshots", type=Path, help="folder for the PNG screenshots (created)")
    parser.add_argument("--presses", type=int, default=40, help="key presses in each mode")
    args = parser.parse_args(argv)
    args.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        project = make_project(Path(work), 4 * args.presses + 40, budget=2 * args.presses + 8)
        server = Server(project)
        driver = chromium()
        try:
            driver.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument",
                {"source": "localStorage.setItem('dalkit-labeller-name', 'benchmark');" + MEASURE},
            )
            driver.get(server.url)
            report("grid", measure(driver, args.presses))
            driver.save_screenshot(str(args.screenshots / "grid.png"))
            driver.find_element("id", "mode").click()
            report("one by one", measure(driver, args.presses))
            driver.save_screenshot(str(args.screenshots / "one-by-one.png"))
            base = server.url.split("?")[0]
            driver.get(base + "labelled")
            driver.save_screenshot(str(args.screenshots / "labelled.png"))
            driver.get(base + "labelled?class=night")
            driver.save_screenshot(str(args.screenshots / "labelled-night.png"))
        finally:
            driver.quit()
            server.stop()
    print(f"screenshots: {', '.join(sorted(p.name for p in args.screenshots.glob('*.png')))} in {args.screenshots}")
    return 0


def measure(driver, presses: int) -> tuple[list[float], list[float]]:
    """Press 1 and 2 in turn, one key at a time; (in-page key-to-next-image ms, selenium send-to-seen ms)."""
    from selenium.webdriver import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.latencies = []")
    seen = []
    for k in range(presses):
        start = time.perf_counter()
        ActionChains(driver).send_keys("12"[k % 2]).perform()
        WebDriverWait(driver, 10, poll_frequency=0.005).until(
            lambda d, n=k + 1: d.execute_script("return window.latencies.length") >= n
        )
        seen.append(1000 * (time.perf_counter() - start))
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return queue.length === 0 && !sending"))
    return driver.execute_script("return window.latencies"), seen


def report(mode: str, figures: tuple[list[float], list[float]]) -> None:
    page, seen = figures
    summary = [
        f"{name}: median {statistics.median(values):.1f} ms, 90th percentile "
        f"{statistics.quantiles(values, n=10)[-1]:.1f} ms, worst {max(values):.1f} ms"
        for name, values in (("in the page", page), ("seen by selenium", seen))
    ]
    print(f"{mode}, key press to the next image over {len(page)} presses: " + "; ".join(summary))


if __name__ == "__main__":
    raise SystemExit(main())

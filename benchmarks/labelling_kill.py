"""kill -9 at random moments of a labelling project's `ask`, `import` and `serve` (issue 15), `--count` times
each (20): no acknowledged label may be lost, an import is recorded whole or not at all, PRAGMA integrity_check
stays ok, and the next command carries on (a last `ask` and `status`, not killed, must succeed).

- ask: `dalkit project ask` killed at a random moment of its run (up to 1.2 x the time an unkilled one takes);
- import: `dalkit project import` of a `--rows`-row CSV (2,000) that changes every row's label, killed likewise;
- serve: `dalkit project serve` killed 0.2-2 s into a labeller's stream of label requests; every request the
  server acknowledged must be in the database.

    PYTHONPATH=src python benchmarks/labelling_kill.py                  # 20 kills of each
    PYTHONPATH=src python benchmarks/labelling_kill.py --count 2 --images 300 --rows 100   # a quick one
"""

from __future__ import annotations

import argparse
import http.client
import random
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from labelling import CLASSES, Labeller, Server, connect, dalkit, integrity, make_project, opened, round_images, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="kills of each command")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=2000, help="rows of each import")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", default="ask,import,serve", help="which commands to kill, comma-separated")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        return run(Path(work), args)


def label_table(project: Path) -> list[tuple]:
    with connect(project) as db:
        return db.execute("SELECT id, image_id, label, source, given_at FROM labels ORDER BY id").fetchall()


def run(work: Path, args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    project = make_project(work, args.images, budget=min(200, args.images // 4))
    served = round_images(project)
    with opened(project) as open_project:
        rest = [path for _, path in open_project.store.images() if path not in set(served)]
        open_project.record_labels([(path, truth(path)) for path in rest[:50]], source="seed")  # the asks train
    rest = rest[50 : 50 + args.rows]
    failures: list[str] = []

    def check(what: str, before: list[tuple]) -> None:
        after = label_table(project)
        if after[: len(before)] != before:
            failures.append(f"{what}: labels committed before the kill changed or went missing")
        if integrity(project) != "ok":
            failures.append(f"{what}: integrity_check is not ok")

    def timed(*command: str) -> float:
        start = time.perf_counter()
        if dalkit(*command, stdout=subprocess.DEVNULL).wait() != 0:
            failures.append(f"`dalkit {' '.join(command)}` (not killed) failed")
        return time.perf_counter() - start

    commands = set(args.commands.split(","))
    ask = ("project", "ask", str(project), "--budget", "5")
    ask_seconds = timed(*ask) if "ask" in commands else 0.0
    moments = []
    for k in range(args.count if "ask" in commands else 0):
        before = label_table(project)
        moments.append(kill_at(dalkit(*ask, stdout=subprocess.DEVNULL), rng.uniform(0, 1.2 * ask_seconds)))
        check(f"ask kill {k + 1}", before)
    if "ask" in commands:
        print(f"ask: {args.count} kills at {min(moments):.2f}-{max(moments):.2f} s (unkilled: {ask_seconds:.1f} s)")

    whole = 0
    import_seconds = None
    for k in range(args.count + 1 if "import" in commands else 0):
        table = work / f"import-{k}.csv"  # every row changes its image's label
        table.write_text("image,label\n" + "".join(f"{p},{CLASSES[(k + i) % 2]}\n" for i, p in enumerate(rest)))
        before = label_table(project)
        if import_seconds is None:
            import_seconds = timed("project", "import", str(project), str(table))
            continue
        kill_at(dalkit("project", "import", str(project), str(table), stdout=subprocess.DEVNULL),
                rng.uniform(0, 1.2 * import_seconds))  # fmt: skip
        recorded = sum(1 for row in label_table(project)[len(before) :] if row[3] == f"csv:{table.name}")
        whole += recorded == len(rest)
        if recorded not in (0, len(rest)):
            failures.append(f"import kill {k}: {recorded} of {len(rest)} rows recorded, not all or nothing")
        check(f"import kill {k}", before)
    if "import" in commands:
        print(f"import: {args.count} kills, each all or nothing ({whole} whole, {args.count - whole} not recorded)")

    acknowledged_total = lost_total = 0
    for k in range(args.count if "serve" in commands else 0):
        before = label_table(project)
        acknowledged, lost = serve_and_kill(project, served, f"kill{k}", rng.uniform(0.2, 2.0))
        acknowledged_total += acknowledged
        lost_total += lost
        if lost:
            failures.append(f"serve kill {k + 1}: {lost} of {acknowledged} acknowledged labels are not recorded")
        check(f"serve kill {k + 1}", before)
    if "serve" in commands:
        print(f"serve: {args.count} kills, {lost_total} of {acknowledged_total} acknowledged labels lost")

    if "ask" in commands:
        timed(*ask)
    timed("project", "status", str(project))
    print(f"then {'an ask and ' if 'ask' in commands else ''}a status, not killed, ran{'' if failures else ' ok'}")
    for failure in failures:
        print("FAIL", failure)
    print("ok: nothing lost, integrity_check ok after every kill" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


def kill_at(process: subprocess.Popen, seconds: float) -> float:
    """kill -9 `process` after `seconds` (or let it end first); returns when it is gone."""
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return seconds


def serve_and_kill(project: Path, images: list[str], name: str, seconds: float) -> tuple[int, int]:
    """Serve, label `images` over and over (each pass flips every label) until the server is killed after
    `seconds`; returns (labels the server acknowledged as recorded, how many of them the database lacks)."""
    server = Server(project)
    recorded: list[tuple[str, str]] = []

    def label() -> None:
        try:
            client = Labeller(server.url, name, timeout=5)
            for j in range(10**6):
                image, given = images[j % len(images)], CLASSES[(j // len(images)) % 2]
                client.seq += 1
                body = {"image": image, "round": 1, "label": given, "labeller": name, "seq": client.seq, "name": name}
                status, answer = client.post("/label", body)
                if status == 200 and answer["recorded"] and not answer["unchanged"]:
                    recorded.append((image, given))
        except (OSError, ValueError, http.client.HTTPException):  # the server is gone (mid-answer, or before the page)
            return

    thread = threading.Thread(target=label)
    thread.start()
    time.sleep(seconds)
    server.kill()
    thread.join()
    with connect(project) as db:
        query = "SELECT path, label FROM labels JOIN images ON images.id = image_id WHERE source = ?"
        held = Counter(db.execute(query, (f"web:{name}",)).fetchall())
    wanted = Counter(recorded)
    return len(recorded), sum((wanted - held).values())


if __name__ == "__main__":
    raise SystemExit(main())

"""Load on the labelling page (issue 15): `--clients` labellers (8) each give `--labels` labels (500), as fast as
the server answers, on loopback, while a `dalkit project import` of `--import-rows` rows (5,000) runs in another
process and an `ask` (training, then selection) runs in the server's background job. A monitor loads the page
every 0.1 s throughout.

Checks: every acknowledged label is in the database exactly once, on its image, with its labeller's name; the
import and the ask finished; PRAGMA integrity_check is ok; the page answered within `--bound` s (1) every time.
Prints requests/s and the worst latencies; exit status 1 if a check failed.

    PYTHONPATH=src python benchmarks/labelling_load.py            # the full run: 8 x 500
    PYTHONPATH=src python benchmarks/labelling_load.py --clients 2 --labels 20 --import-rows 100   # a quick one
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from labelling import Labeller, Server, dalkit, integrity, label_rows, make_project, opened, round_images, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--labels", type=int, default=500, help="labels per client")
    parser.add_argument("--import-rows", type=int, default=5000)
    parser.add_argument("--bound", type=float, default=1.0, help="seconds the page must answer within")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        return run(Path(work), args)


def run(work: Path, args: argparse.Namespace) -> int:
    asked = args.clients * args.labels
    # images enough for the round the clients label, the import, 200 seed labels and the next round's `asked`
    project = make_project(work, 2 * asked + args.import_rows + 500, budget=asked)
    ours = round_images(project)
    with opened(project) as open_project:
        others = [path for _, path in open_project.store.images() if path not in set(ours)]
        open_project.record_labels(
            [(path, truth(path)) for path in others[:200]], source="seed"
        )  # the ask trains on these
    csv_file = work / "import.csv"
    csv_file.write_text("image,label\n" + "".join(f"{p},{truth(p)}\n" for p in others[200 : 200 + args.import_rows]))

    server = Server(project)
    latencies: dict[str, list[float]] = {"label": [], "page": []}
    acknowledged: list[tuple[str, str, str]] = []
    done = threading.Event()
    lock = threading.Lock()

    def monitor() -> None:
        client = Labeller(server.url, "monitor")
        while not done.is_set():
            start = time.perf_counter()
            status, _ = client.get("/")
            with lock:
                latencies["page"].append(time.perf_counter() - start if status == 200 else float("inf"))
            time.sleep(0.1)
        client.close()

    def labeller(k: int) -> None:
        client = Labeller(server.url, f"client{k}")
        for path in ours[k * args.labels : (k + 1) * args.labels]:
            start = time.perf_counter()
            client.label(path, truth(path))
            with lock:
                latencies["label"].append(time.perf_counter() - start)
                acknowledged.append((f"web:client{k}", path, truth(path)))
        client.close()

    try:
        watcher = threading.Thread(target=monitor)
        watcher.start()
        asker = Labeller(server.url, "asker")
        assert asker.post("/ask", {})[0] == 200, "the ask did not start"
        importing = dalkit("project", "import", str(project), str(csv_file), stdout=subprocess.PIPE)
        start = time.perf_counter()
        clients = [threading.Thread(target=labeller, args=(k,)) for k in range(args.clients)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        seconds = time.perf_counter() - start
        importing.communicate(timeout=600)
        imported = importing.returncode == 0
        job = wait_for_ask(asker)
        done.set()
        watcher.join()
        asker.close()
    finally:
        done.set()
        server.stop()

    rows = label_rows(project, "web:client")
    exactly_once = len(rows) == len(acknowledged) and all(rows.get((s, p)) == 1 for s, p, _ in acknowledged)
    right_label = all(truth(path) == label for _, path, label in acknowledged)
    imported_rows = sum(label_rows(project, "csv:").values())
    checks = {
        "every acknowledged label in the database exactly once": exactly_once and right_label,
        f"import of {args.import_rows} rows finished": imported and imported_rows == args.import_rows,
        "the ask finished": job["state"] == "done",
        "integrity_check ok": integrity(project) == "ok",
        f"the page answered within {args.bound} s every time": max(latencies["page"]) <= args.bound,
    }
    print(
        f"{len(acknowledged)} labels from {args.clients} clients in {seconds:.1f} s: "
        f"{len(acknowledged) / seconds:.0f} requests/s; worst label answer {max(latencies['label']):.3f} s, "
        f"worst page load {max(latencies['page']):.3f} s over {len(latencies['page'])} loads; "
        f"the ask: {job['state']} (round {job['round']}) in {job['seconds']} s; {imported_rows} rows imported"
    )
    if job.get("error"):
        print(f"the ask's error: {job['error']}")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


def wait_for_ask(client: Labeller, seconds: float = 600) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = json.loads(client.get("/status.json")[1])["job"]
        if job["state"] != "running":
            return job
        time.sleep(0.2)
    return {"state": "still running", "round": None, "seconds": seconds}


if __name__ == "__main__":
    raise SystemExit(main())

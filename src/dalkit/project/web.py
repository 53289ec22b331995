"""The labelling page: `dalkit project serve DIR` shows the images dalkit asks about, one button per class.

A click (or a number key, for the highlighted image) stores the label at once, through the same
`Project.record_labels` as a CSV import, so closing the page loses nothing. "Ask for more" runs the next round
(training, then selection) and reloads. Standard library only (http.server): the page is served on
127.0.0.1 by default, images are served by their id in the project (never by a path from the request), and
requests are handled one at a time, so the SQLite writes never interleave.
"""

from __future__ import annotations

import html
import json
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from dalkit.errors import DalkitError
from dalkit.project.project import Project

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dalkit: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }}
header {{ display: flex; gap: 2rem; align-items: baseline; flex-wrap: wrap; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 1rem; margin-top: 1rem; }}
.card {{ background: white; border: 2px solid #ddd; border-radius: 8px; padding: .5rem; width: 180px; }}
.card.current {{ border-color: #2563eb; }}
.card.done {{ opacity: .55; }}
.card img {{ width: 164px; height: 164px; object-fit: contain; image-rendering: pixelated; background: #eee; }}
.card .path {{ font-size: .75rem; overflow-wrap: anywhere; }}
.card .guess {{ font-size: .8rem; color: #555; }}
button {{ margin: .15rem; padding: .25rem .5rem; border-radius: 4px; border: 1px solid #999; background: #f3f3f3; }}
button.chosen {{ background: #2563eb; color: white; border-color: #2563eb; }}
#message {{ color: #b91c1c; }}
</style></head>
<body>
<header><h2>{title}</h2><span id="counts">{counts}</span>
<span>round {round} &middot; keys 1-9 label the highlighted image</span>
<button id="ask">ask for {budget} more</button><span id="message"></span></header>
<div class="cards">{cards}</div>
<script>
const classes = {classes};
function cards() {{ return [...document.querySelectorAll('.card')]; }}
function highlight() {{
  cards().forEach(c => c.classList.remove('current'));
  const next = cards().find(c => !c.classList.contains('done'));
  if (next) next.classList.add('current');
}}
async function post(url, body) {{
  const response = await fetch(url, {{method: 'POST', headers: {{'Content-Type': 'application/json'}},
                                      body: JSON.stringify(body)}});
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error);
  return answer;
}}
async function label(card, name) {{
  try {{
    const answer = await post('/label', {{image: card.dataset.image, label: name}});
    card.querySelectorAll('button').forEach(b => b.classList.toggle('chosen', b.textContent === name));
    card.classList.add('done');
    document.getElementById('counts').textContent = answer.counts;
    document.getElementById('message').textContent = '';
    highlight();
  }} catch (error) {{ document.getElementById('message').textContent = error.message; }}
}}
document.querySelectorAll('.card button').forEach(b =>
  b.addEventListener('click', () => label(b.closest('.card'), b.textContent)));
document.addEventListener('keydown', event => {{
  const card = document.querySelector('.card.current');
  const k = parseInt(event.key, 10);
  if (card && k >= 1 && k <= classes.length) label(card, classes[k - 1]);
}});
document.getElementById('ask').addEventListener('click', async () => {{
  const message = document.getElementById('message');
  message.textContent = 'training and choosing the next images...';
  try {{ await post('/ask', {{}}); location.reload(); }} catch (error) {{ message.textContent = error.message; }}
}});
highlight();
</script></body></html>
"""


class LabellingServer(ThreadingHTTPServer):
    """An HTTP server bound to one project; `lock` serialises every request that reads or writes it."""

    daemon_threads = True

    def __init__(self, project: Project, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.project = project
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: LabellingServer

    def log_message(self, format: str, *args: object) -> None:
        """Write nothing: http.server would print a line per request, and the terminal is kept for dalkit's own."""

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        with self.server.lock:
            if path == "/":
                self.reply(HTTPStatus.OK, "text/html; charset=utf-8", page(self.server.project).encode())
            elif path.startswith("/image/") and path[7:].isdigit():
                self.send_image(int(path[7:]))
            elif path == "/status.json":
                self.reply_json(HTTPStatus.OK, status(self.server.project))
            else:
                self.reply_json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with self.server.lock:
                project = self.server.project
                if path == "/label":
                    project.record_labels([(str(body["image"]), str(body["label"]))], source="web")
                elif path == "/ask":
                    project.ask(log=lambda line: None, progress=False)
                else:
                    self.reply_json(HTTPStatus.NOT_FOUND, {"error": f"no action {path}"})
                    return
                self.reply_json(HTTPStatus.OK, status(project))
        except (DalkitError, KeyError, ValueError) as error:
            message = str(error) if isinstance(error, DalkitError) else f"bad request ({error!r})"
            self.reply_json(HTTPStatus.BAD_REQUEST, {"error": message})

    def send_image(self, image_id: int) -> None:
        project = self.server.project
        paths = dict(project.store.images())
        if image_id not in paths:
            self.reply_json(HTTPStatus.NOT_FOUND, {"error": f"no image {image_id}"})
            return
        file = Path(project.settings.images) / paths[image_id]
        try:
            data = file.read_bytes()
        except OSError as error:
            self.reply_json(HTTPStatus.NOT_FOUND, {"error": f"{file} could not be read ({error})"})
            return
        self.reply(HTTPStatus.OK, mimetypes.guess_type(file.name)[0] or "application/octet-stream", data)

    def reply_json(self, code: HTTPStatus, payload: dict) -> None:
        self.reply(code, "application/json", json.dumps(payload).encode())

    def reply(self, code: HTTPStatus, content_type: str, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


def counts_line(project: Project) -> str:
    counts = project.class_counts()
    return f"{sum(counts.values())} labelled: " + ", ".join(f"{name} {n}" for name, n in counts.items())


def status(project: Project) -> dict:
    return {"counts": counts_line(project), "labelled": project.class_counts(), "rounds": project.rounds()}


def page(project: Project) -> str:
    """The latest round's images, unlabelled first, each with its class buttons (the current label marked)."""
    store, classes = project.store, project.settings.classes
    paths, current = dict(store.images()), store.current_labels()
    asked = sorted(store.questions(store.last_round()), key=lambda row: row[0] in current)
    cards = []
    for image_id, _, guess in asked:
        label = current.get(image_id)
        buttons = "".join(
            f'<button class="{"chosen" if name == label else ""}">{html.escape(name)}</button>' for name in classes
        )
        cards.append(
            f'<div class="card{" done" if label else ""}" data-image="{html.escape(paths[image_id])}">'
            f'<img src="/image/{image_id}" alt=""><div class="path">{html.escape(paths[image_id])}</div>'
            f'<div class="guess">model guess: {html.escape(guess or "none yet")}</div>{buttons}</div>'
        )
    if not cards:
        cards.append("<p>Nothing asked yet: press <b>ask</b> to get the first images.</p>")
    return PAGE.format(
        title=html.escape(project.directory.resolve().name),
        counts=html.escape(counts_line(project)),
        round=store.last_round(),
        budget=project.settings.budget,
        cards="".join(cards),
        classes=json.dumps(classes).replace("<", "\\u003c"),
    )


def serve(project: Project, host: str = "127.0.0.1", port: int = 8765) -> LabellingServer:
    """A server for `project` on host:port (port 0: any free port); call `serve_forever()` on it."""
    try:
        return LabellingServer(project, (host, port))
    except OSError as error:
        raise DalkitError(f"cannot listen on {host}:{port} ({error.strerror}); pass another --port.") from None

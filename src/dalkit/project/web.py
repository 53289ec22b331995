"""The labelling page: `dalkit project serve DIR` shows the images dalkit asks about, one button per class.

A click (or a key, for the highlighted image: 1-9, 0, a-z for up to 36 classes; space skips, ? is "unsure",
Backspace undoes the last answer) stores the answer through the same SQLite store as a CSV import, so closing
the page loses nothing. Skip and unsure are answers, not labels (the store's `answers`); an undo sends the
image's previous state as a new request. The labeller's name, asked once and kept in the browser's
localStorage, goes with every answer and is recorded with each label. The page moves on at the key press and
sends its answers in order, each naming the image, the round it was shown in, the page's labeller id and a
sequence number: the server refuses (409) an answer for an image that round did not ask about, and records a
retried request once. `/labelled` lists every labelled image, filtered by class, for correction (see `page`).

"Ask for more" starts the next round (training, then selection) as a background job, one at a time; the page
polls `/status.json` for its progress and reloads when it is done. Requests never wait for it: each one opens
its own short SQLite connection (Starlette runs them on a thread pool; uvicorn serves them).

Safety (see `Guard`): the server listens on 127.0.0.1 by default and answers only requests whose Host is the
address it listens on (no DNS rebinding); every request that changes something needs the page's CSRF token
(a per-server secret embedded in the page, sent back as a header) and no foreign Origin; listening beyond
this computer needs a secret token, printed in the page's address (as Jupyter does). Headers and bodies are
size-limited before they are read, and every error is a JSON answer `{"error": "one sentence"}`. Images are
served by their id in the project (never by a path from the request), and only if the file is a regular file
inside the image folder.
"""

from __future__ import annotations

import ipaddress
import json
import mimetypes
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dalkit.errors import DalkitError
from dalkit.project.page import counts_line, labelled_page, queue_page
from dalkit.project.project import Project
from dalkit.project.store import (
    CORRECTION,
    DATABASE,
    DUPLICATE,
    NOT_IN_ROUND,
    NOT_LABELLED,
    SUPERSEDED,
    UNCHANGED,
    WEB_ANSWERS,
    LabelStore,
)

MAX_BODY_BYTES = 64 * 1024  # a label request is ~200 bytes
MAX_HEADER_BYTES = 16 * 1024
MAX_LABELLER = 64
CSRF_HEADER = "x-csrf-token"
TOKEN_HEADER = "x-dalkit-token"
JOB_LOG_LINES = 20
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # Everything the page uses is inline or its own: nothing from a CDN, so it works offline.
    (
        b"content-security-policy",
        b"default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]

# -- the background ask ---------------------------------------------------------------------------------------


class AskJob:
    """The one background `ask` of a server: its state (idle, running, done, failed), log lines and outcome."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.state, self.error, self.round, self.asked = "idle", None, None, None
        self.started = self.finished = None
        self.lines: list[str] = []

    def start(self) -> bool:
        """Start an ask in a thread; False if one is running."""
        with self.lock:
            if self.state == "running":
                return False
            self.state, self.error, self.round, self.asked = "running", None, None, None
            self.started, self.finished, self.lines = time.time(), None, []
        threading.Thread(target=self.run, name="dalkit-ask", daemon=True).start()
        return True

    def run(self) -> None:
        outcome: dict = {"state": "done"}
        try:
            project = Project.open(self.directory)
            try:
                asked = project.ask(log=self.log, progress=False)
                outcome.update(round=asked.number, asked=len(asked.paths))
            finally:
                project.close()
        except DalkitError as error:
            outcome = {"state": "failed", "error": str(error)}
        except Exception as error:  # anything else is a bug: the page says so, the terminal shows where
            traceback.print_exc()
            outcome = {
                "state": "failed",
                "error": f"the ask failed ({type(error).__name__}: {error}); see the terminal.",
            }
        with self.lock:
            for key, value in outcome.items():
                setattr(self, key, value)
            self.finished = time.time()

    def log(self, line: str) -> None:
        with self.lock:
            self.lines = [*self.lines, line][-JOB_LOG_LINES:]

    def snapshot(self) -> dict:
        with self.lock:
            end = self.finished or time.time()
            return {
                "state": self.state,
                "log": list(self.lines),
                "seconds": 0.0 if self.started is None else round(end - self.started, 1),
                "error": self.error,
                "round": self.round,
                "asked": self.asked,
            }


# -- the guard: hosts, tokens, origins, sizes ---------------------------------------------------------------


class Guard:
    """ASGI middleware that refuses, before the application sees them: oversized headers (431), a Host that is
    not the server's (400), a missing access token when one is required (403), a body over the limit or a
    malformed Content-Length (413 / 400), and a change without the CSRF token or from a foreign Origin (403).
    It adds the security headers to every answer."""

    def __init__(
        self, app: ASGIApp, hosts: frozenset[str] | None, access_token: str | None, csrf_token: str, port: int
    ) -> None:
        self.app, self.hosts, self.access_token, self.csrf_token, self.port = app, hosts, access_token, csrf_token, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            code, text = refusal
            await JSONResponse({"error": text}, status_code=code)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        raw = scope["headers"]
        if sum(len(name) + len(value) + 4 for name, value in raw) > MAX_HEADER_BYTES:
            return 431, f"the request's headers are larger than {MAX_HEADER_BYTES // 1024} KB; send smaller ones."
        headers: dict[str, str] = {}
        for name, value in raw:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host", "")
        if self.hosts is not None and host.lower() not in self.hosts:
            shown = " or ".join(sorted(self.hosts))
            return 400, f"this server answers to Host {shown} only, not {host!r}; open the address it printed."
        if self.access_token is not None and not self.has_token(scope, headers):
            return 403, "this page needs the token of the address `dalkit project serve` printed (…/?token=…)."
        length = headers.get("content-length")
        if length is not None:
            if not length.isascii() or not length.isdigit():
                return 400, f"Content-Length {length!r} is not a number of bytes."
            if int(length) > MAX_BODY_BYTES:
                return 413, f"the request's body is larger than {MAX_BODY_BYTES // 1024} KB; a label is a few bytes."
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin.lower() != f"{scope.get('scheme', 'http')}://{host}".lower():
                return 403, f"changes from another site (Origin {origin}) are refused; use the labelling page itself."
            if not secrets.compare_digest(headers.get(CSRF_HEADER, "").encode(), self.csrf_token.encode()):
                return 403, "this change needs the page's CSRF token; reload the labelling page and try again."
        return None

    def has_token(self, scope: Scope, headers: dict[str, str]) -> bool:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            cookies = SimpleCookie()
        given = [
            *query.get("token", []),
            headers.get(TOKEN_HEADER, ""),
            cookies[cookie_name(self.port)].value if cookie_name(self.port) in cookies else "",
        ]
        expected = self.access_token.encode()
        return any(secrets.compare_digest(token.encode("utf-8", "replace"), expected) for token in given if token)


def cookie_name(port: int) -> str:
    return f"dalkit_token_{port}"  # cookies are shared by all ports of a host: one name per server


# -- the application ------------------------------------------------------------------------------------------


def create_app(project: Project, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> Starlette:
    """The labelling page for `project`, as an ASGI application listening (for its Host check) on host:port.

    Beyond this computer (`host` not a loopback address) an access token is required: `token`, or a new random
    one (in `app.state.access_token`)."""
    directory = project.directory
    settings = project.settings
    if not is_loopback(host) and token is None:
        token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    job = AskJob(directory)

    @contextmanager
    def session():
        """The project on a connection of this request's own, closed when it answers."""
        opened = Project(directory, LabelStore(directory / DATABASE, setup=False), settings)
        try:
            yield opened
        finally:
            opened.close()

    def counts(opened: Project) -> dict:
        """What a label request answers with: the labels per class (cheap: one SQL count)."""
        labelled = opened.class_counts()
        return {"counts": counts_line(labelled), "labelled": labelled}

    def status(opened: Project) -> dict:
        return {
            **counts(opened),
            "rounds": opened.rounds(),
            "round": opened.store.last_round(),
            "estimate": opened.estimate_text(),
            "job": job.snapshot(),
        }

    def index(request: Request) -> Response:
        with session() as opened:
            text = queue_page(opened, csrf_token, labeller=secrets.token_hex(8))
        response = HTMLResponse(text)
        given = request.query_params.get("token")
        if token is not None and given is not None and secrets.compare_digest(given.encode(), token.encode()):
            response.set_cookie(cookie_name(port), token, httponly=True, samesite="strict")
        return response

    def labelled(request: Request) -> Response:
        label, start = request.query_params.get("class") or None, request.query_params.get("start", "0")
        if label is not None and label not in settings.classes:
            raise HTTPException(404, f"{label!r} is not a class of this project: {', '.join(settings.classes)}.")
        if not start.isascii() or not start.isdigit():
            raise HTTPException(400, f"start={start!r} is not a number of images to leave out.")
        with session() as opened:
            return HTMLResponse(labelled_page(opened, csrf_token, secrets.token_hex(8), label, int(start)))

    def status_json(request: Request) -> Response:
        with session() as opened:
            return JSONResponse(status(opened))

    def image(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        with session() as opened:
            path = opened.store.image_path(image_id)
            file = None if path is None else opened.image_file(path)
        if path is None:
            raise HTTPException(404, f"no image {image_id} in this project.")
        if file is None:
            raise HTTPException(404, f"image {image_id} ({path}) is not a regular file inside the image folder.")
        try:
            data = file.read_bytes()
        except OSError as error:
            raise HTTPException(404, f"image {image_id} ({path}) could not be read ({error.strerror}).") from None
        return Response(data, media_type=mimetypes.guess_type(file.name)[0] or "application/octet-stream")

    async def label(request: Request) -> Response:
        body = await read_json(request)
        fields = label_fields(body)
        return await run_in_threadpool(record_label, *fields)

    def record_label(
        image_path: str, round_number: int, name: str, labeller: str, seq: int, answer: str, person: str
    ) -> Response:
        with session() as opened:
            outcome = opened.record_web_label(image_path, round_number, name, labeller, seq, answer, person)
            if outcome == NOT_IN_ROUND:
                raise HTTPException(
                    409,
                    f"image {image_path} was not asked in round {round_number}; reload the page to see the "
                    "images of the latest round.",
                )
            if outcome == NOT_LABELLED:
                raise HTTPException(
                    409, f"image {image_path} has no label to correct; label it in a round (the page at /)."
                )
            answer = counts(opened)
        answer.update(
            recorded=outcome not in (DUPLICATE, SUPERSEDED),
            duplicate=outcome == DUPLICATE,
            superseded=outcome == SUPERSEDED,
            unchanged=outcome == UNCHANGED,
        )
        return JSONResponse(answer)

    async def ask(request: Request) -> Response:
        await read_json(request)  # the body is not used, but it is read within the limits
        if not job.start():
            raise HTTPException(409, "an ask is already running; wait for it to finish (the page shows its progress).")
        return JSONResponse(await run_in_threadpool(status_now))

    def status_now() -> dict:
        with session() as opened:
            return status(opened)

    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/labelled", labelled, methods=["GET"]),
            Route("/status.json", status_json, methods=["GET"]),
            Route("/image/{image_id:int}", image, methods=["GET"]),
            Route("/label", label, methods=["POST"]),
            Route("/ask", ask, methods=["POST"]),
        ],
        middleware=[
            Middleware(Guard, hosts=allowed_hosts(host, port), access_token=token, csrf_token=csrf_token, port=port)
        ],
        exception_handlers={HTTPException: http_error, DalkitError: dalkit_error, Exception: internal_error},
    )
    app.state.access_token = token
    app.state.csrf_token = csrf_token
    app.state.job = job
    return app


async def read_json(request: Request) -> object:
    """The request's body as JSON, read up to `MAX_BODY_BYTES` (a body sent without a length is counted)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the request's body is larger than {MAX_BODY_BYTES // 1024} KB.")
    if not body.strip():
        return {}
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the request's body is not UTF-8 JSON.") from None
    except RecursionError:
        raise HTTPException(400, "the request's body is JSON nested too deeply.") from None


def label_fields(body: object) -> tuple[str, int, str, str, int, str, str]:
    """(image, round, label, labeller, seq, answer, name) of a label request, each of the right type, or a 400
    saying which. `answer` (default `label`) is `label`, `skip`, `unsure` or `none`; `label` may then be empty;
    `name` (optional) is the person's name. Round 0 (`CORRECTION`) corrects the label of a labelled image."""
    if not isinstance(body, dict):
        raise HTTPException(400, "a label request is a JSON object with image, round, label, labeller and seq.")
    answer = body.get("answer", "label")
    if answer not in WEB_ANSWERS:
        raise HTTPException(
            400, f"'answer' of a label request must be one of {', '.join(WEB_ANSWERS)}, not {answer!r}."
        )
    kinds = {"image": str, "round": int, "label": str, "labeller": str, "seq": int}
    if answer != "label":
        body = {"label": "", **body}
    for key, kind in kinds.items():
        value = body.get(key)
        if value is None:
            raise HTTPException(400, f"the label request has no {key!r}; send image, round, label, labeller and seq.")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise HTTPException(400, f"{key!r} of a label request must be a {kind.__name__}, not {value!r}.")
    if not 0 < len(body["labeller"]) <= MAX_LABELLER or body["seq"] < 0 or body["round"] < CORRECTION:
        raise HTTPException(
            400, "a label request needs a labeller id (1-64 characters), a seq >= 0 and a round >= 0 (0: a correction)."
        )
    name = body.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > MAX_LABELLER:
        raise HTTPException(400, f"'name' of a label request must be text of at most {MAX_LABELLER} characters.")
    return body["image"], body["round"], body["label"], body["labeller"], body["seq"], answer, name.strip()


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    text = error.detail
    if text == HTTPStatus(error.status_code).phrase:  # Starlette's own (no route, wrong method): say more
        if error.status_code == 404:
            text = f"nothing at {request.url.path}; the labelling page is at /."
        elif error.status_code == 405:
            text = f"{request.method} is not allowed on {request.url.path}."
    return JSONResponse({"error": text}, status_code=error.status_code, headers=error.headers)


async def dalkit_error(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": str(error)}, status_code=400)


async def internal_error(request: Request, error: Exception) -> Response:
    return JSONResponse(
        {"error": f"the server failed on this request ({type(error).__name__}); see the terminal."}, status_code=500
    )


# -- listening ------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The Host headers the server answers: its own address (and this computer's names when it is a loopback
    one); None (any) when it listens on every interface, where the access token guards it."""
    if host in WILDCARDS:
        return None
    names = {host.lower()}
    if is_loopback(host):
        names |= {"localhost", "127.0.0.1", "[::1]"}
    names = {f"[{name}]" if ":" in name and not name.startswith("[") else name for name in names}
    return frozenset({f"{name}:{port}" for name in names} | (names if port == 80 else set()))


@dataclass
class Listening:
    """A bound socket with its application, the address to open and the warning to print (None on loopback)."""

    socket: socket.socket
    app: Starlette
    url: str
    warning: str | None


def listen(project: Project, host: str = "127.0.0.1", port: int = 8765) -> Listening:
    """Bind host:port (port 0: any free port) and build the application for the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise DalkitError(
            f"cannot listen on {host}:{port} ({error.strerror}); pass another --port or --host."
        ) from None
    port = sock.getsockname()[1]
    app = create_app(project, host=host, port=port)
    shown = socket.gethostname() if host in WILDCARDS else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    url = f"http://{shown}:{port}/"
    warning = None
    if app.state.access_token is not None:
        url += f"?token={app.state.access_token}"
        warning = (
            f"warning: listening on {host}, beyond this computer: anyone who can reach port {port} and has the "
            "token in the address below can label and train; share that address only with your labellers."
        )
    return Listening(sock, app, url, warning)


def serve(project: Project, host: str = "127.0.0.1", port: int = 8765, say: Callable[[str], None] = print) -> None:
    """Serve the labelling page until Ctrl-C, with uvicorn (h11, headers limited, no access log)."""
    import uvicorn

    listening = listen(project, host, port)
    if listening.warning:
        print(listening.warning, file=sys.stderr)
    say(f"labelling page: {listening.url}  (Ctrl-C stops it; every label is saved as it is given)")
    config = uvicorn.Config(
        listening.app,
        http=json_h11_protocol(),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
        timeout_keep_alive=5,
    )
    try:
        uvicorn.Server(config).run(sockets=[listening.socket])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then passes Ctrl-C on
        say("stopped; every label given is in the project's database.")
    finally:
        listening.socket.close()


def json_h11_protocol() -> type:
    """uvicorn's h11 protocol, answering a request that is not valid HTTP (a Content-Length of -1, headers past
    the limit) in JSON like every other error, instead of plain text."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": INVALID_HTTP}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"), *SECURITY_HEADERS]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    import h11

    return JSONH11Protocol


INVALID_HTTP = (
    "the request is not valid HTTP/1.1 (a malformed or negative Content-Length, or headers over "
    f"{MAX_HEADER_BYTES // 1024} KB); the labelling page sends none such."
)

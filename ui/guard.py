"""HTTP-level privacy rules Gradio does not have, as one ASGI middleware in front of its routes.

- Every browser gets a random session cookie (HttpOnly, SameSite=Strict). An uploaded file is
  registered to the session that uploaded it, and the file route serves anything in the upload
  folder only to that session (others get 404, as if it did not exist); the analysis refuses
  another session's upload paths too (`UploadOwners.owned_by`).
- With login on, the pages an anonymous visitor gets (the login page) carry no API
  description: Gradio embeds its whole API description in every page, the login page
  included; it is replaced by an empty one (and the page withheld if that cannot be done).
- Wrong passwords are throttled (`ui.auth.LoginThrottle`): while a wait runs, a sign-in is
  answered 429 with Retry-After and the password is not checked.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import threading
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from ui.auth import LoginThrottle

SESSION_COOKIE = "medmm-session"
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")
LOGIN_ROUTES = ("/login", "/login/")
UPLOAD_ROUTE = "/gradio_api/upload"
EMPTY_API_INFO = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'
_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")


class UploadOwners:
    """Which browser session uploaded each file (by real path). One per process, like Gradio's upload folder."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, session: str, paths) -> None:
        with self._lock:
            for p in paths:
                self._owner[os.path.realpath(str(p))] = session

    def owner(self, path: str | Path) -> str | None:
        with self._lock:
            return self._owner.get(os.path.realpath(str(path)))

    def owned_by(self, session: str | None, path: str | Path) -> bool:
        """Whether `session` uploaded `path` (False for unknown paths and sessions)."""
        return bool(session) and self.owner(path) == session


OWNERS = UploadOwners()


def session_of(cookies) -> str | None:
    """The session id in a request's cookies (a mapping), or None when it has none or a malformed one."""
    value = (cookies or {}).get(SESSION_COOKIE)
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def _cookies(scope) -> dict[str, str]:
    jar = SimpleCookie()
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header counts as none
                continue
    return {k: m.value for k, m in jar.items()}


def _inside(path: str, folder: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, root]) == root


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _form_user(scope, body: bytes) -> str:
    """The `username` field of a sign-in form (url-encoded or multipart)."""
    kind = dict(scope.get("headers", ())).get(b"content-type", b"").decode("latin-1")
    if kind.startswith("application/x-www-form-urlencoded"):
        return parse_qs(body.decode("utf-8", "replace")).get("username", [""])[0].strip()
    match = re.search(rb'name="username"\r\n\r\n(.*?)\r\n', body, re.S)
    return match[1].decode("utf-8", "replace").strip() if match else ""


async def _respond(send, status: int, payload: dict, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PrivacyGuard:
    """The middleware (see the module docstring); `throttle` None: no login throttling."""

    def __init__(self, app, throttle: LoginThrottle | None = None, owners: UploadOwners = OWNERS):
        self.app, self.throttle, self.owners = app, throttle, owners

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        session = session_of(cookies)
        extra: list[tuple[bytes, bytes]] = []
        if session is None:
            session = secrets.token_urlsafe(32)
            extra.append((b"set-cookie", f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict".encode()))
        path, method = scope["path"], scope["method"]
        if method == "POST" and path in LOGIN_ROUTES and self.throttle is not None:
            await self._login(scope, receive, send, extra)
        elif method == "POST" and path.rstrip("/") == UPLOAD_ROUTE:
            await self._buffered(
                scope, receive, send, extra, lambda status, body: self._register(session, status, body)
            )
        elif method in ("GET", "HEAD") and path.startswith(FILE_ROUTES):
            await self._file(scope, receive, send, extra, session, path)
        elif method in ("GET", "HEAD") and self._anonymous(scope, cookies):
            await self._buffered(scope, receive, send, extra, None, strip_api=True)
        else:
            await self.app(scope, receive, self._with_headers(send, extra))

    @staticmethod
    def _with_headers(send, extra):
        async def wrapped(message):
            if extra and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return wrapped

    @staticmethod
    def _anonymous(scope, cookies: dict[str, str]) -> bool:
        """Login is on and this request carries no signed-in user's token."""
        app = scope.get("app")
        if getattr(app, "auth", None) is None:
            return False
        cookie_id = getattr(app, "cookie_id", "")
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return not (token and getattr(app, "tokens", {}).get(token))

    def _register(self, session: str, status: int, body: bytes) -> bytes:
        if status == 200:
            try:
                paths = json.loads(body)
            except ValueError:
                paths = []
            self.owners.add(session, [p for p in paths if isinstance(p, str)])
        return body

    async def _buffered(self, scope, receive, send, extra, edit, *, strip_api: bool = False) -> None:
        """Run the app with its response held back and edited (`edit(status, body)`, or for an HTML page the API
        description stripped) before it is sent; any other response passes as it comes."""
        start: dict = {}
        chunks: list[bytes] = []
        passing = False

        async def hold(message):
            nonlocal passing
            if message["type"] == "http.response.start":
                start.update(message)
                kind = dict(message.get("headers", [])).get(b"content-type", b"")
                if strip_api and not kind.startswith(b"text/html"):
                    passing = True
                    await send({**message, "headers": [*message.get("headers", []), *extra]})
            elif passing:
                await send(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, hold)
        if passing:
            return
        body = b"".join(chunks)
        status = start.get("status", 500)
        if scope["method"] == "HEAD":
            await send({**start, "headers": [*start.get("headers", []), *extra]})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        if edit is not None:
            body = edit(status, body)
        elif b"gradio_api_info" in body:
            body, count = _API_INFO.subn(EMPTY_API_INFO, body)
            if count != 1:  # the page changed shape: withhold it rather than leak the API description
                await _respond(
                    send, 500, {"detail": "the login page could not be served without the API description"}, extra
                )
                return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers + extra})
        await send({"type": "http.response.body", "body": body})

    async def _file(self, scope, receive, send, extra, session: str, path: str) -> None:
        target = path[len(next(p for p in FILE_ROUTES if path.startswith(p))) :]
        upload_dir = getattr(scope.get("app"), "uploaded_file_dir", None)
        if (
            upload_dir
            and not target.startswith(("http://", "https://"))
            and _inside(os.path.abspath(target), str(upload_dir))
        ):
            if not self.owners.owned_by(session, target):
                await _respond(send, 404, {"detail": "Not Found"}, extra)
                return
            extra = [*extra, (b"cache-control", b"no-store")]
        await self.app(scope, receive, self._with_headers(send, extra))

    async def _login(self, scope, receive, send, extra) -> None:
        body = await _read_body(receive)
        user = _form_user(scope, body)
        address = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.retry_after(user, address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            await _respond(
                send,
                429,
                {"detail": f"Too many failed sign-ins: try again in {seconds} s."},
                [(b"retry-after", str(seconds).encode()), *extra],
            )
            return
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await self._with_headers(send, extra)(message)

        await self.app(scope, _replay(body), watch)
        if status.get("code") == 200:
            self.throttle.succeeded(user, address)
        elif status.get("code") in (400, 401, 403):
            self.throttle.failed(user, address)

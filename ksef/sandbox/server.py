"""HTTP front of the sandbox (stdlib ``http.server``), embeddable in a thread or run from the CLI."""
import http.server
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.parse

from .app import Sandbox, SandboxConfig
from .http import Fail, Request, too_many_requests

_logger = logging.getLogger(__name__)

SPOOL_THRESHOLD = 4 * 1024 * 1024


class _Drop(Exception):
    """Close the connection without sending a response."""

    def __init__(self, wait=0.0):
        super().__init__("drop")
        self.wait = wait


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KSeF-Sandbox/1.0"
    sys_version = ""

    def log_message(self, format, *args):
        _logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_PATCH(self):
        self._handle()

    # ------------------------------------------------------------------------------------
    def _read_body(self, path):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(), None
        if not length:
            return b"", None
        try:
            length = int(length)
        except ValueError:
            raise Fail(400, 21405, details=["Nieprawidłowy nagłówek Content-Length."]) from None
        sandbox = self.server.sandbox
        limit = sandbox.config.max_part_bytes if path.startswith("/storage/batch/") else sandbox.config.max_body_bytes
        if length > limit:
            if length <= 4 * limit:  # drain it so that the client can read the answer
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1024 * 1024))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            else:
                self.close_connection = True
            raise Fail(413, detail="Treść żądania przekracza dozwolony rozmiar %d bajtów." % limit)
        if length > SPOOL_THRESHOLD:
            tmp_dir = os.path.join(sandbox.data_dir, "tmp")
            os.makedirs(tmp_dir, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=tmp_dir)
            remaining = length
            with os.fdopen(fd, "wb") as fh:
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1024 * 1024))
                    if not chunk:
                        break
                    fh.write(chunk)
                    remaining -= len(chunk)
            return b"", name
        return self.rfile.read(length), None

    def _read_chunked(self):
        out = bytearray()
        limit = self.server.sandbox.config.max_body_bytes
        while True:
            line = self.rfile.readline(1024)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline(1024)
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline(1024)
            if len(out) > limit:
                self.close_connection = True
                raise Fail(413, detail="Treść żądania jest zbyt duża.")

    def _handle(self):
        sandbox = self.server.sandbox
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path) or "/"
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
        req = Request(self.command, path, query, dict(self.headers.items()), b"", self.client_address[0], host)
        body_file = None
        try:
            try:
                req.body, body_file = self._read_body(path)
                req.body_file = body_file
                response = self._route(sandbox, req, path)
            except Fail as exc:
                response = exc.render(req)
            except _Drop:
                raise
            except Exception:
                _logger.exception("sandbox error on %s %s", self.command, path)
                response = Fail(500, detail="Nieznany błąd.").render(req)
            self._send(req, response)
        except _Drop as drop:
            if drop.wait:
                self.server.stop_event.wait(drop.wait)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        finally:
            if body_file and os.path.exists(body_file):
                os.unlink(body_file)

    def _route(self, sandbox, req, path):
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return sandbox.admin(req, path[len("/_sandbox"):])
        fired = sandbox.faults.pick(req.method, path)
        after = []
        for fault in fired:
            kind = fault["type"]
            if kind == "latency":
                self.server.stop_event.wait(fault["seconds"])
            elif kind == "drop":
                raise _Drop()
            elif kind == "rate_limit":
                return too_many_requests(req, fault["retry_after"],
                                         "Przekroczono limit żądań. Spróbuj ponownie po %d sekundach."
                                         % fault["retry_after"])
            elif kind == "error" and fault["when"] == "before":
                raise Fail(fault["status"], detail="Wstrzyknięty błąd serwera (sandbox).",
                           headers={"Retry-After": "1"} if fault["status"] == 503 else None)
            else:
                after.append(fault)
        response = self._dispatch(sandbox, req, path)
        for fault in after:
            kind = fault["type"]
            if kind == "timeout_after_store":
                raise _Drop(wait=fault["seconds"])
            if kind == "error":
                return Fail(fault["status"], detail="Wstrzyknięty błąd serwera po zapisaniu żądania (sandbox).") \
                    .render(req)
            if kind == "malformed":
                response.malformed = fault["mode"]
        return response

    def _dispatch(self, sandbox, req, path):
        if path == "/latarnia" or path.startswith("/latarnia/"):
            return sandbox.latarnia(req, path[len("/latarnia"):] or "/status")
        if path.startswith("/qr/"):
            return sandbox.qr(req, path[len("/qr"):])
        gate = sandbox.api_gate() if (path.startswith(("/v2/", "/storage/"))) else None
        if gate == "drop":
            raise _Drop()
        if gate == "503":
            raise Fail(503, detail="System KSeF jest niedostępny (%s)." % sandbox.status["status"],
                       headers={"Retry-After": "60"})
        if path.startswith("/v2/"):
            return sandbox.dispatch(req, path[3:])
        if path.startswith("/storage/"):
            return sandbox.storage(req, path)
        raise Fail(404, detail="Nie znaleziono zasobu %s." % path)

    def _send(self, req, response):
        body = response.body
        content_type = response.content_type
        headers = dict(response.headers)
        mode = getattr(response, "malformed", None)
        declared = None
        if mode == "truncated_json":
            body = body[: max(1, len(body) // 2)]
        elif mode == "wrong_content_type":
            body = (b"<html><head><title>Error</title></head>"
                    b"<body><h1>Service temporarily unavailable</h1></body></html>")
            content_type = "text/html"
        elif mode == "short_body":
            declared = len(body) + 64
            self.close_connection = True
        warning = req.header("x-test-system-warning")
        if warning:
            headers["X-System-Warning"] = warning
        self.send_response(response.status)
        if content_type and (body or response.body_path):
            self.send_header("Content-Type", content_type)
        if response.body_path:
            self.send_header("Content-Length", headers.pop("Content-Length"))
        else:
            headers.pop("Content-Length", None)
            self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.body_path:
            with open(response.body_path, "rb") as fh:
                while True:
                    chunk = fh.read(1024 * 1024)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
        elif body:
            self.wfile.write(body)
        self.wfile.flush()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        _logger.debug("connection error from %s", client_address)


class SandboxServer:
    """A running sandbox: ``SandboxServer(data_dir=...).start()`` ... ``.stop()``.

    ``port=0`` picks a free port (see :attr:`url`). ``rate_limits``: ``"off"`` (default for embedding),
    ``"production"`` or a dict of groups. ``config``: :class:`SandboxConfig` or dict of overrides.
    """

    def __init__(self, host="127.0.0.1", port=0, data_dir=None, *, rate_limits="off", config=None, faults=None,
                 status=None):
        if data_dir is None:
            data_dir = os.environ.get("KSEF_SANDBOX_DATA") or os.path.expanduser("~/.local/share/ksef-sandbox")
        if isinstance(config, dict):
            overrides, config = config, SandboxConfig()
            config.update(overrides)
        self.sandbox = Sandbox(data_dir, config=config, rate_limits=rate_limits)
        if faults:
            self.sandbox.faults.add(faults)
        if status:
            self.sandbox.set_status(status)
        self.httpd = _HTTPServer((host, port), Handler)
        self.httpd.sandbox = self.sandbox
        self.httpd.stop_event = threading.Event()
        self._thread = None

    @property
    def host(self):
        return self.httpd.server_address[0]

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ksef-sandbox-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        try:
            self.httpd.serve_forever(poll_interval=0.5)
        finally:
            self.close()

    def stop(self):
        self.httpd.stop_event.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.close()

    def close(self):
        self.httpd.stop_event.set()
        try:
            self.httpd.server_close()
        finally:
            self.sandbox.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_idle(self, timeout=60):
        deadline = time.time() + timeout
        while self.sandbox.busy() and time.time() < deadline:
            time.sleep(0.02)
        return not self.sandbox.busy()

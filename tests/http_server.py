"""A local HTTP server on 127.0.0.1 for the download tests: Range requests, cut connections, logins."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FileServer:
    """Serves ``files`` (path -> bytes; the path may include a query). Behaviours, per path:

    - ``cut[path] = [n1, n2, ...]``: the k-th request sends at most n_k bytes of its body, then closes;
    - ``ignore_range``: paths answered with the whole file (HTTP 200) even to Range requests;
    - ``status[path] = code``: always answer with this status (e.g. 401, 404, 503);
    - ``chunked``: paths sent with Transfer-Encoding: chunked, without Content-Length;
    - ``gzip_labelled``: paths sent with Content-Encoding: gzip (the bytes unchanged, as a misconfigured
      server does for .tar.gz files);
    - ``shifted_range``: paths whose 206 answers start 1000 bytes before the asked offset;
    - ``etag[path]``: the file's ETag; a Range request with another If-Range gets the whole file (200);
    - ``login = (user, password)``: ``POST /login/`` with those form fields sets a session cookie; paths in
      ``protected`` then need it, and answer with an HTML login page otherwise (as Cityscapes does). A failed
      login gets a cookie too (a CSRF token) and the login form again.
    ``requests`` records (method, path, Range header) of every request, ``headers`` the request headers.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, list[int]] = {}
        self.ignore_range: set[str] = set()
        self.status: dict[str, int] = {}
        self.login: tuple[str, str] | None = None
        self.protected: set[str] = set()
        self.chunked: set[str] = set()
        self.gzip_labelled: set[str] = set()
        self.shifted_range: set[str] = set()
        self.etag: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.headers: list[dict[str, str]] = []
        self.content_type = "application/octet-stream"
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                server.requests.append(("POST", self.path, None))
                given = (form.get("username", [""])[0], form.get("password", [""])[0])
                self.send_response(200)  # a failed login is a page that says so, not an error status
                if self.path == "/login/" and server.login and given == server.login:
                    self.send_header("Set-Cookie", "sessionid=ok; Path=/")
                    self._body(b"<html>welcome</html>", "text/html")
                else:
                    self.send_header("Set-Cookie", "csrftoken=abc; Path=/")
                    self._body(b'<html><form><input type="password" name="password"></form></html>', "text/html")

            def do_GET(self):
                path = self.path
                server.requests.append(("GET", path, self.headers.get("Range")))
                server.headers.append(dict(self.headers))
                if path in server.status:
                    self.send_response(server.status[path])
                    self._body(b"<html>error</html>", "text/html")
                    return
                if path in server.protected and "sessionid=ok" not in (self.headers.get("Cookie") or ""):
                    self.send_response(200)
                    self._body(b"<html>please log in</html>", "text/html")
                    return
                if path not in server.files:
                    self.send_response(404)
                    self._body(b"<html>not found</html>", "text/html")
                    return
                data = server.files[path]
                start = 0
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if if_range is not None and if_range != server.etag.get(path):
                    wanted = None
                if wanted and path not in server.ignore_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self._body(b"", "text/plain")
                        return
                    if path in server.shifted_range:
                        start = max(start - 1000, 0)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                limits = server.cut.get(path)
                limit = limits.pop(0) if limits else None
                self.send_header("Content-Type", server.content_type)
                if path in server.etag:
                    self.send_header("ETag", server.etag[path])
                if path in server.gzip_labelled:
                    self.send_header("Content-Encoding", "gzip")
                sent = body if limit is None else body[:limit]
                if path in server.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(sent), 100_000):
                        piece = sent[i:i + 100_000]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    if limit is None:
                        self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(sent)
                self.wfile.flush()
                if limit is not None:
                    self.close_connection = True

            def _body(self, body: bytes, content_type: str):
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GET requests for ``path``, in order."""
        return [rng for method, p, rng in self.requests if method == "GET" and p == path]


def query_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")

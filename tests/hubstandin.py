"""A local stand-in for a model hub: serves files at `/<owner>/<name>/resolve/<revision>/<file>` the way
huggingface_hub's downloads expect (HEAD with ETag and commit, then GET), and logs every request."""
from __future__ import annotations

import hashlib
import http.server
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    def _file(self) -> bytes | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.server.files.get(("/".join(parts[:2]), "/".join(parts[4:])))
        return None

    def _headers(self, data: bytes | None):
        self.server.requests.append((self.command, self.path))
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.end_headers()
        return True

    def do_HEAD(self):
        self._headers(self._file())

    def do_GET(self):
        data = self._file()
        if self._headers(data):
            self.wfile.write(data)

    def log_message(self, *args):
        pass


class HubStandIn:
    """`with HubStandIn({(repo, filename): bytes}) as hub:` ... `hub.endpoint`, `hub.requests`."""

    def __init__(self, files: dict[tuple[str, str], bytes]):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.files, self.server.requests = dict(files), []
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.server.requests

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

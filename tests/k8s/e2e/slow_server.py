"""An HTTP server in the release's namespace that takes its time: what `acquire http`
fetches in tests of jobs that must still be running when something happens to them.

    GET /delay/<seconds>   200 after <seconds>, body `answered after <seconds>s`
    GET /healthz           200 at once (readiness)

Standard library only: it runs from the runner image (`python /srv/slow_server.py`).
"""

from __future__ import annotations

import http.server
import time

PORT = 8080


def body_for(seconds: float) -> bytes:
    return f"answered after {seconds:g}s\n".encode()


class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts == ["healthz"]:
            self._answer(b"ok\n")
        elif len(parts) == 2 and parts[0] == "delay":
            seconds = float(parts[1])
            time.sleep(seconds)
            self._answer(body_for(seconds))
        else:
            self.send_error(404)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("", PORT), Slow).serve_forever()

"""Serve a folder on localhost with the standard library's http.server (for `docs --serve`)."""
from __future__ import annotations

import errno
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import ProjectError

HOST = "127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the standard library's name
        pass  # one line per request would bury the URL the user needs


def make_server(folder: Path, port: int = 0, host: str = HOST) -> ThreadingHTTPServer:
    """A server for `folder` on host:port (port 0: any free port; see `server.server_port`)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ProjectError(f"port {port} is already in use: pass another one with --port, "
                               f"e.g. `python runner.py docs --serve --port {port + 1}`") from None
        raise


def serve(folder: Path, port: int) -> int:
    """Serve until Ctrl-C; returns the exit code."""
    server = make_server(folder, port)
    url = f"http://{HOST}:{server.server_port}/index.html"
    print(f"Serving {folder} at {url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nStopped.")
    finally:
        server.server_close()
    return 0

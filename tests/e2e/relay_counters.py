"""Reads the byte counters of tests/e2e/relay.py (standard library only)."""

import json
import socket


def read(control_port: int) -> dict:
    """`{route: {"up": n, "down": n}}` as the relay counts them now."""
    with socket.create_connection(("127.0.0.1", control_port), timeout=10) as s:
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return json.loads(b"".join(chunks))


class Meter:
    """Bytes both ways on the app, link and server routes during a `with` block.

    The app route is the client's hop, the link route the hop between the sidecars, and
    the server route (optional) the inbound sidecar's hop to the server.
    """

    def __init__(self, control_port: int, app_route: str, link_route: str, server_route: str | None = None):
        self.control_port = control_port
        self.app_route = app_route
        self.link_route = link_route
        self.server_route = server_route
        self.app_bytes = 0
        self.link_bytes = 0
        self.server_bytes = None

    @staticmethod
    def _total(counters: dict, route: str) -> int:
        c = counters[route]
        return c["up"] + c["down"]

    def __enter__(self):
        self._start = read(self.control_port)
        return self

    def __exit__(self, *exc):
        end = read(self.control_port)
        self.app_bytes = self._total(end, self.app_route) - self._total(self._start, self.app_route)
        self.link_bytes = self._total(end, self.link_route) - self._total(self._start, self.link_route)
        if self.server_route:
            self.server_bytes = self._total(end, self.server_route) - self._total(self._start, self.server_route)
        return False

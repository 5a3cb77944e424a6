"""A TCP proxy on a loopback port that a test can break like a network: `blackhole()` keeps
accepting and reading but forwards nothing either way (a firewall that drops: the client sees
timeouts, not refusals), `cut()` also closes every connection it carries, `reject()` closes
every connection at once (a firewall that resets), `mend()` forwards again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

try:
    from support.net import free_port
except ModuleNotFoundError:  # imported as tests.support (by the benchmarks)
    from tests.support.net import free_port

__all__ = ["TcpProxy"]


class TcpProxy:
    """`TcpProxy(("127.0.0.1", target_port)).start()`; clients connect to `port`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._dropping = False
        self._rejecting = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread.start()
        return self

    def blackhole(self) -> None:
        with self._lock:
            self._dropping = True

    def cut(self) -> None:
        """Drop everything, and close what it carries now (new connections hang)."""
        with self._lock:
            self._dropping = True
            for sock in list(self._peers):
                self._close(sock)

    def reject(self) -> None:
        """Close every connection, and each new one as soon as it is accepted."""
        with self._lock:
            self._rejecting = True
            for sock in list(self._peers):
                self._close(sock)

    def mend(self) -> None:
        with self._lock:
            self._dropping = self._rejecting = False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for sock in list(self._peers):
                self._close(sock)
        self._listener.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with self._lock:
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._peers:
                        self._pump(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._rejecting:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[client] = upstream
        self._peers[upstream] = client

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        if self._dropping:
            return  # read and thrown away: neither end hears anything
        try:
            self._peers[sock].sendall(data)
        except OSError:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        other = self._peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            s.close()

"""Real local receivers for the delivery tests: no mocks between httpx/smtplib and a socket."""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

# --- webhook receiver -----------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Records every POST; answers 200 unless told to fail (N times or always) or to hang."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._failures: list[int] = []  # statuses for the next requests, then `status`
        self.status = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, times: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def record(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            return self._failures.pop(0) if self._failures else self.status

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver = cast(WebhookReceiver, self.server.receiver)  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = receiver.record(
            Request(
                path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=body
            )
        )
        if receiver.delay:
            time.sleep(receiver.delay)
        answer = b"ok" if status < 400 else f"refused with {status}".encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: object) -> None:
        pass


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- SMTP server ----------------------------------------------------------------------------


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: bytes
    auth: tuple[str, str] | None = None

    @property
    def message(self) -> EmailMessage:
        return cast(EmailMessage, message_from_bytes(self.data, policy=email_policy.default))


@dataclass
class SmtpServer:
    """Just enough SMTP for smtplib: EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, QUIT."""

    mails: list[Mail] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
        self._server.daemon_threads = True
        self._server.smtp = self  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> SmtpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    def reply(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\r\n" for line in lines).encode())

    def handle(self) -> None:
        server = cast(SmtpServer, self.server.smtp)  # type: ignore[attr-defined]
        self.reply("220 localhost test ESMTP")
        sender, recipients, auth = "", list[str](), None
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb, _, arg = command.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-localhost", "250 AUTH PLAIN")
            elif verb == "HELO" or verb in ("RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "AUTH" and arg.upper().startswith("PLAIN "):
                _, user, password = base64.b64decode(arg.split()[1]).decode().split("\0")
                auth = (user, password)
                self.reply("235 authenticated")
            elif verb == "MAIL":
                sender = arg.split(":", 1)[1].strip().strip("<>").split(">")[0]
                recipients = []
                self.reply("250 ok")
            elif verb == "RCPT":
                recipients.append(arg.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                server.mails.append(Mail(sender, recipients, data, auth))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

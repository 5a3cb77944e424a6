"""bench_api's load generator when wrk is not installed: N keep-alive HTTP/1.1 connections,
each sending GET requests back to back for a fixed time. Raw asyncio streams, not an HTTP client
library, so the generator costs as little per request as Python allows (it still tops out well
below wrk: its figure is a floor on the server's rate). Prints one JSON line:
{"requests", "errors", "seconds", "p50_ms", "p99_ms"}.

    python -m tests.bench.loadgen HOST PORT PATH CONNECTIONS SECONDS

`request_for` and `get` are the one-request parts, shared with the soak's paced load
(tests/soak/api_load.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

__all__ = ["get", "request_for"]


def request_for(host: str, port: int, path: str) -> bytes:
    """A keep-alive HTTP/1.1 GET of path, encoded once and sent as often as wanted."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request on an open connection and read its answer whole (by Content-Length):
    the status code (0 if the answer is not HTTP). A broken connection raises OSError,
    IncompleteReadError or LimitOverrunError."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    status = head[9:12]  # b"HTTP/1.1 200 OK": the three digits after the version
    return int(status) if status.isdigit() else 0  # 0: not an HTTP status line


async def _connection(
    host: str, port: int, path: str, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = request_for(host, port, path)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            if await get(reader, writer, request) not in (200, 503):
                errors.append(1)
            latencies.append(time.perf_counter() - start)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        errors.append(1)
    finally:
        writer.close()


async def _main(host: str, port: int, path: str, connections: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(host, port, path, start + seconds, latencies, errors)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 if latencies else 0

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main() -> int:
    host, port, path, connections, seconds = sys.argv[1:6]
    result = asyncio.run(_main(host, int(port), path, int(connections), float(seconds)))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

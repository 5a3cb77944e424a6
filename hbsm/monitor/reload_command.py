"""`hbsm reload`: ask a running `hbsm run` to read its configuration file again.

It calls the API (`POST /admin/config/reload`) rather than sending SIGHUP: the answer says
what was added, removed, changed and what needs a restart, or why the file was refused, and it
works for a monitor on another host or in a container. The address and the admin token are
those of the configuration (`--config`, else $HEARTBEAT_CONFIG, else ./hbsm.toml), or `--url`
and `--token`. (SIGHUP to the `hbsm run` process does the same, answering only in its stderr
and the event log.)

Exit codes: 0 reloaded, 2 the file is refused (its one line, as `hbsm config --check` says
it), 3 the monitor cannot be reached, 1 the monitor would not reload (no token or a wrong
one, a monitor that cannot reload, a log that cannot be written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["add_parser", "run"]

EXIT_REFUSED = 1
EXIT_BAD_CONFIG = 2
EXIT_UNREACHABLE = 3


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reload",
        help="make a running monitor read its configuration file again",
        description="Ask the running monitor (through its API) to read its configuration file "
        "again and apply what changed; prints what it did. Exit codes: 0 reloaded, 2 the "
        "file is refused (the running configuration stays), 3 the monitor cannot be reached, "
        "1 it would not reload (token, log).",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="the monitor's hbsm.toml, for its address and admin token "
                        "(default: $HEARTBEAT_CONFIG, else ./hbsm.toml)")  # fmt: skip
    parser.add_argument("--url", metavar="URL",
                        help="the monitor's API (http://127.0.0.1:5000), instead of the "
                        "config's host and port")  # fmt: skip
    parser.add_argument("--token", metavar="TOKEN",
                        help="admin token (default: the config's, or "
                        "$HEARTBEAT_ADMIN_TOKEN)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the answer (default 60)")  # fmt: skip
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    url, token = args.url, args.token
    if url is None or token is None:
        from hbsm.config import ConfigError, load_config
        from hbsm.config.load import own_base_url

        try:
            config = load_config(args.config, os.environ).config
        except ConfigError as exc:
            # The monitor would refuse it too: said here, the running configuration untouched.
            print(exc, file=sys.stderr)
            return EXIT_BAD_CONFIG
        url = url or own_base_url(config.host, config.port)
        token = token if token is not None else config.admin_token
    endpoint = url.rstrip("/") + "/admin/config/reload"
    request = urllib.request.Request(endpoint, data=b"", method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"hbsm reload: cannot reach the monitor at {url}: {reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    answer = _json(body)
    if status == 200:
        print(answer.get("message", "reloaded"))
        restart = answer.get("needs_restart") or []
        if restart:
            print(f"needs a restart to apply: {', '.join(restart)}")
        return 0
    message = answer.get("error") or body.decode(errors="replace").strip()
    if status == 422:
        print(message, file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(f"hbsm reload: {endpoint} answered {status}: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

"""`hbsm check URL`: every route of a running instance, one PASS/FAIL/SKIP line per check.

Exit codes: 0 every check passed, 1 one failed, 2 bad usage, 3 nothing answers at URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_UNREACHABLE", "EXIT_USAGE", "add_parser", "run"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

TOKEN_VAR = "HEARTBEAT_ADMIN_TOKEN"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="exercise every route of a running instance and report PASS/FAIL per check",
        description=(
            "Exercise every route of a running hbsm instance (the standalone API or a Flask app "
            "with the blueprint): /health (JSON and health+json), /health/detailed, one service, "
            "an unknown service, the admin status, stop and start (monitoring is left as it was "
            "found), the login page when one is configured, and a wrong method. One line per "
            "check: PASS, FAIL or SKIP, the request, the HTTP status and why."
        ),
        epilog="Exit codes: 0 all passed, 1 a check failed, 2 bad usage, 3 the instance cannot "
        "be reached.",
    )
    parser.add_argument("url", metavar="URL", help="the instance, e.g. http://127.0.0.1:5000")
    parser.add_argument("--token", metavar="T",
                        help=f"the admin token (default: ${TOKEN_VAR})")  # fmt: skip
    parser.add_argument("--service", metavar="NAME",
                        help="the service to ask about (default: the first one)")  # fmt: skip
    parser.add_argument("--login", metavar="URL", help="the login page that must answer 200 "
                        "(default: the login_page service's target, when the detailed body "
                        "shows it)")  # fmt: skip
    parser.add_argument("--timeout", metavar="S", type=_seconds, default=5.0,
                        help="seconds to wait for each answer (default 5)")  # fmt: skip
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of lines")  # fmt: skip
    parser.set_defaults(handler=run)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from hbsm.check.checks import Unreachable, normalize_url, run_checks

    token = args.token if args.token is not None else os.environ.get(TOKEN_VAR, "").strip()
    try:
        url = normalize_url(args.url)
    except ValueError as exc:
        print(f"hbsm check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        checks = run_checks(url, token=token or None, service=args.service, login=args.login,
                            timeout=args.timeout)  # fmt: skip
    except Unreachable as exc:
        if args.json:
            print(json.dumps({"url": url, "ok": False, "reachable": False, "error": str(exc)}))
        print(f"hbsm check: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    failed = sum(1 for c in checks if c.verdict == "fail")
    passed = sum(1 for c in checks if c.verdict == "pass")
    skipped = len(checks) - failed - passed
    summary = f"{passed} passed, {failed} failed, {skipped} skipped: {url}"
    if args.json:
        doc = {
            "url": url,
            "ok": failed == 0,
            "reachable": True,
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
            "checks": [c.to_dict() for c in checks],
        }
        print(json.dumps(doc, indent=2))
    else:
        for check in checks:
            print(check.line())
        print(("OK    " if failed == 0 else "FAIL  ") + summary)
    return EXIT_FAILED if failed else 0

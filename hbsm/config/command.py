"""`hbsm config`: print the configuration in force, or `--check FILE` without starting anything.

Exit status: 0 fine, 2 the configuration is bad (its one-line error on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from hbsm.config.env import CONFIG_VAR, ENV_VARS
from hbsm.config.errors import ConfigError
from hbsm.config.load import DEFAULT_FILE, load_config
from hbsm.config.render import to_json, to_text

__all__ = ["EXIT_BAD_CONFIG", "add_parser", "run"]

EXIT_BAD_CONFIG = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `config` subcommand to `subparsers` (from `ArgumentParser.add_subparsers()`).

    Sets `handler=run` as the parser's default (as `hbsm run` does), for a dispatcher calling
    `args.handler(args)`.
    """
    variables = ", ".join(var.name for var in ENV_VARS)
    parser = subparsers.add_parser(
        "config",
        help="print or check the configuration in force",
        description=(
            "Print the configuration in force, one `key = value  # source` line per setting "
            "(source: default, file or env), or check a file without starting anything."
        ),
        epilog=(
            f"The file: --config, else ${CONFIG_VAR}, else ./{DEFAULT_FILE} if it exists. "
            f"The environment overrides the file: {variables}. Exit status 2: bad config."
        ),
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--check",
        metavar="FILE",
        help="validate FILE (with the environment applied) and print 'FILE: ok (N services)'",
    )
    which.add_argument(
        "-c",
        "--config",
        dest="config_file",
        metavar="FILE",
        help=f"the TOML file to print (default: ${CONFIG_VAR}, else ./{DEFAULT_FILE})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead: {path, config, sources, policies} (with --check: the verdict)",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace, *, env: Mapping[str, str] | None = None) -> int:
    """Carry out `hbsm config` for parsed `args`; `env` defaults to `os.environ`."""
    environ = os.environ if env is None else env
    check: str | None = getattr(args, "check", None)
    as_json: bool = getattr(args, "json", False)
    try:
        loaded = load_config(check or getattr(args, "config_file", None), environ)
    except ConfigError as exc:
        if check is not None and as_json:
            print(json.dumps({"ok": False, "path": check, "error": _error_doc(exc)}))
        print(exc, file=sys.stderr)
        return EXIT_BAD_CONFIG
    if check is not None:
        count = len(loaded.config.services)
        if as_json:
            print(json.dumps({"ok": True, "path": check, "services": count}))
        else:
            print(f"{check}: ok ({count} service{'' if count == 1 else 's'})")
        return 0
    print(to_json(loaded) if as_json else to_text(loaded), end="")
    return 0


def _error_doc(exc: ConfigError) -> dict[str, Any]:
    return {"message": str(exc), "source": exc.source, "key": exc.key, "reason": exc.reason}

"""The `hbsm` command line: a small dispatcher over subcommands.

Each subcommand lives in its own module, listed in COMMANDS, which provides
`add_parser(subparsers) -> ArgumentParser` and `run(args) -> int`. Only the module of the
command asked for is imported (`hbsm run` does not load the replay, the demo or the dashboard's
command line); `hbsm --help`, or no command, imports them all to list them. A command module
keeps its heavy imports (textual, httpx, ...) inside `run`, so `hbsm --help` stays fast and the
core's layering holds.

Results go to stdout, errors and notices to stderr (one line each, prefixed with the command).

Exit codes:
    0    ok
    1    `hbsm replay --verify` found a decision that differs from the recorded one;
         `hbsm check`: a check failed; `hbsm demo`: an injected fault was not repaired;
         `hbsm notify --test`: a channel did not deliver
    2    bad usage or bad input: missing file, corrupt line, not an event log, bad --set,
         bad configuration, `hbsm run` on a non-loopback address without an admin token,
         `hbsm notify` with no channel configured
    3    `hbsm run`: the event log cannot be used (held by another writer, corrupt);
         `hbsm check`: the instance cannot be reached; `hbsm export`: the store cannot be read
    4    `hbsm run`: the API cannot listen (address in use, unknown host)
    130  interrupted (Ctrl-C)
    141  stdout closed early (e.g. piped into `head`)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from hbsm import __version__

__all__ = ["COMMANDS", "EXIT_CODES", "build_parser", "main"]

# Each subcommand's name and module, in the order `hbsm --help` lists them.
COMMANDS: dict[str, str] = {
    "demo": "hbsm.demo.command",
    "run": "hbsm.monitor.command",
    "reload": "hbsm.monitor.reload_command",
    "check": "hbsm.check.command",
    "dashboard": "tui.command",
    "config": "hbsm.config.command",
    "notify": "hbsm.notify.command",
    "replay": "hbsm.replay.command",
    "export": "hbsm.export.command",
}

EXIT_CODES = """\
exit codes:
  0    ok
  1    replay --verify found a decision that differs from the recorded one; check: a check failed;
       demo: an injected fault was not repaired; notify --test: a channel did not deliver;
       reload: the monitor would not reload
  2    bad usage or bad input: missing file, corrupt line, not an event log, bad --set,
       bad configuration, run on a non-loopback address without an admin token,
       notify with no channel configured
  3    run: the event log cannot be used (held by another writer, corrupt);
       check, reload: the instance cannot be reached; export: the store cannot be read
  4    run: the API cannot listen (address in use, unknown host)
  130  interrupted (Ctrl-C)
  141  stdout closed early (e.g. piped into head)"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or (`command`, one of COMMANDS) of that one alone: its
    module is the only one imported, and `hbsm run` holds no other command's imports for as
    long as it runs."""
    parser = argparse.ArgumentParser(
        prog="hbsm",
        description="hbsm watches services, repairs them in graded steps and records every "
        "decision in a replayable event log.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hbsm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        if command is not None and name != command:
            continue
        module = importlib.import_module(module_name)
        sub = module.add_parser(subparsers)
        sub.set_defaults(handler=module.run)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names first (`hbsm run ...`), if it is one; else None (`hbsm
    --help`, a misspelt command: every command is listed)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(_command_of(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (argparse exits 2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        code: int = args.handler(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("hbsm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`hbsm replay ... | head`): not an error worth a traceback.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code

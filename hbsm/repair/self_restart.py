"""Restarting the process hbsm runs in (`restart.kind = "self"`): an app that embeds its monitor.

The original feature restarted the Flask application it was part of. Started as a plain
process (`python app/main.py` on werkzeug's development server, or any script), the process
is re-executed: the same interpreter, the same command line, environment and working
directory, the same pid. Python's files are not inherited across exec: the log's lock is
released with its descriptor, and the new monitor takes it. werkzeug's server socket is (werkzeug
makes it inheritable and names it in $WERKZEUG_SERVER_FD for its reloader's child): the new
process is told to take it over as that child would, so the port is never closed and the
connections waiting on it are answered by the new process.

The caller records the decision (and a `monitor.stopped` saying why) and closes the log first:
the new process resumes from it, counts the restart as done, and keeps its cooldown and budget,
so an app that keeps failing is not restarted faster than its cooldown allows.

Under gunicorn a worker is not the process to re-execute (its master owns the socket and the
workers): the master is sent SIGHUP, its graceful reload: new workers load the app afresh
while the old ones finish their requests and stop. The worker that takes the log's lock next
resumes from it and finishes the restart (another worker, standing by, or a new one).
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from typing import Literal, NoReturn

__all__ = ["command_line", "how", "reexec", "reload_gunicorn"]


def how() -> Literal["exec", "gunicorn"]:
    """What serves this process: a gunicorn worker, or a process to re-execute."""
    return "gunicorn" if "gunicorn.workers.base" in sys.modules else "exec"


def command_line() -> list[str]:
    """The command line this process was started with, to start it again."""
    return [sys.executable, *sys.orig_argv[1:]]


def reexec() -> NoReturn:
    """Replace this process by a fresh start of itself (never returns)."""
    if _werkzeug_socket() is not None:
        # werkzeug's `run_simple` reuses $WERKZEUG_SERVER_FD when it runs as its reloader's
        # child: the same hand-over, without a reloader.
        os.environ["WERKZEUG_RUN_MAIN"] = "true"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command_line())


def _werkzeug_socket() -> int | None:
    """The descriptor of werkzeug's listening socket, when this process has one to hand over."""
    named = os.environ.get("WERKZEUG_SERVER_FD", "")
    if not named.isdigit():
        return None
    fd = int(named)
    try:
        is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
        return fd if is_socket and os.get_inheritable(fd) else None
    except OSError:  # closed meanwhile
        return None


def reload_gunicorn() -> int:
    """SIGHUP to this worker's gunicorn master (a graceful reload of every worker); its pid."""
    master = os.getppid()
    os.kill(master, signal.SIGHUP)
    return master

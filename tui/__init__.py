"""The Textual dashboard of hbsm (`hbsm dashboard`): a projection of the event log, like the API.

This package imports `hbsm`; `hbsm` never imports it (docs/architecture.md, layers). Textual itself
is only imported by the modules that draw (app, screens, widgets), never by `tui.command` at import
time, so `hbsm --help` stays light. Layout:

    tui.command   the `hbsm dashboard` subcommand (argparse; imports textual inside `run`)
    tui.sources   where events come from: LogTail (a file log), ApiStream (a remote /events)
    tui.board     what the views read: LiveBoard (folds arriving batches), ReplayBoard (a cursor)
    tui.format    text of cells and badges: durations, countdowns, sparklines (pure)
    tui.app       the App; tui.screens and tui.widgets its parts; app.tcss its stylesheet
"""

__all__: list[str] = []

"""Shared by every test folder: `tests/` and `tests/flask` on sys.path, so the folders' helpers
import by name (`from probes.servers import HttpTarget`, `from monitor import support`,
`import heartbeat_support`) whichever folders pytest was asked to run.

The folders are separate packages (tests/flask is not one: it would shadow Flask), and pytest
puts a folder's parent on the path only when it collects something there.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for folder in (_HERE / "flask", _HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

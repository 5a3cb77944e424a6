"""hbsm: watches services, repairs them in graded steps, records every decision in an event log.

The core never imports the dashboard (`tui`) or any UI library.
"""

from hbsm.errors import HbsmError

__version__ = "0.1.0"
__all__ = ["HbsmError", "__version__"]

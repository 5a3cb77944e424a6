"""hbsm: watches services, repairs them in graded steps, records every decision in an event log.

The core never imports the dashboard (`tui`) or any UI library.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

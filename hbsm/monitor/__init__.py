"""The monitor runtime: wiring probes, the state machine, the log, repairs and notifications."""

from hbsm.monitor.runtime import Monitor

__all__ = ["Monitor"]

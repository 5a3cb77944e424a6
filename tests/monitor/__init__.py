"""Integration tests of the monitor runtime (`hbsm.monitor`): real local HTTP servers, real
supervised child processes killed with SIGKILL, the real event log, and `hbsm run` itself as a
subprocess. No mocks between the monitor and a socket or a process.

A package so that its helper modules import relatively and its test modules' names cannot
collide with other test folders'.
"""

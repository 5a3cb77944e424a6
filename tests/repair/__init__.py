"""Tests of hbsm.repair: real child processes, files, sockets and HTTP servers, no mocks.

A package so that its helper module (`support`) imports relatively and its test modules' names
cannot collide with other test folders'.
"""

"""Tests of hbsm.probes against real local targets (tests/probes/servers.py), no mocks.

A package so that its helper modules import relatively and its test modules' names cannot
collide with other test folders'.
"""

"""Tests of the service state machine (hbsm.fsm): DESIGN §3's table, invariants and properties.

A package so that its helper module (`driver`) imports relatively and its test modules' names
cannot collide with other test folders'.
"""

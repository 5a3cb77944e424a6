"""Tests of the service state machine (hbsm.fsm): its table, invariants and properties
(docs/architecture.md).

A package so that its helper module (`driver`) imports relatively and its test modules' names
cannot collide with other test folders'.
"""

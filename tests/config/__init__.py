"""Tests of hbsm.config: the file, the environment, the checks and `hbsm config`.

A package so that its module names cannot collide with other test folders'.
"""

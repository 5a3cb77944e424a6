"""Tests of hbsm.notify: planning (incidents, dedupe, rate limit) and delivery against real
local receivers (an HTTP webhook receiver and a minimal SMTP server on 127.0.0.1)."""

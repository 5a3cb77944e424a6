"""The reliability and security suite (docs/reliability.md): faults survived, bad input refused,
each with real processes, sockets and files. `just test` runs it (bounded fuzzing); `just soak` runs
the long load test and longer fuzzing. docs/reliability.md lists every case and the test that shows
it.

A package so that its helper modules import relatively and its test modules' names cannot
collide with other test folders'.
"""

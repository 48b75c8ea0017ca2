"""The Switchboard load tester (`switchboard-load`): real WebSocket connections at scale, with a
check that every publication reached every subscriber once and in order (README.md here).

Nothing in this package imports bench/: the benchmarks use the tester, not the other way round.
"""

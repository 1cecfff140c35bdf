"""Randomness quality: SP 800-90B health tests, the legacy metrics, an SP 800-22 battery.

Pure and fast (numpy), with no I/O: callers feed bytes or bit arrays and read results.
"""

"""Conformance suites that run against any bus: the emulator in CI, a real chip on a Pi.

``pytest conformance --bus sim://atecc608a`` (the default) or ``--bus /dev/i2c-1``. The suites only
speak bytes through the smbus2 surface (``i2c_rdwr`` with ``smbus2.i2c_msg``), so what passes on
the emulator and on silicon is the same test. Checks that write the chip are skipped unless
``--allow-destructive`` is given.
"""

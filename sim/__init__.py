"""Emulation for LoKey: a virtual I2C bus and a byte-accurate ATECC608A.

This package never imports :mod:`lokey` (an import-linter contract enforces it), so a bug shared
by the driver and the emulator cannot hide: both are pinned to ``../shared/vectors/``.
"""

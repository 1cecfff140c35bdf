"""LoKey: a true-random-number service for the Microchip ATECC608A, simulation first.

The driver (:mod:`lokey.hardware`), the controller, Fortuna and VirtIO cores, the quality
checks (:mod:`lokey.quality`) and their HTTP services (:mod:`lokey.services`); the emulator they
are tested against ships beside it as :mod:`sim`.
"""

__version__ = "0.1.0"

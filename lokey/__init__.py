"""LoKey: a true-random-number service for the Microchip ATECC608A, simulation first.

The driver, controller and services arrive in later issues; today the distribution ships the
emulator (:mod:`sim`) and the conformance suites (:mod:`conformance`) they will stand on.
"""

__version__ = "0.1.0"

"""Conformance suites that run against any bus: the emulator in CI, a real chip on a Pi.

``pytest conformance --bus sim://atecc608a`` (the default) or ``--bus /dev/i2c-1``;
``python -m conformance`` runs the same with JUnit XML and a summary table. The bus suites
(``test_bus_semantics``, ``test_atecc608a_protocol``, ``test_smbus2_path``) only speak bytes
through the smbus2 surface (``i2c_rdwr`` with ``smbus2.i2c_msg``), so what passes on the
emulator and on silicon is the same test; checks that write the chip are skipped on hardware
unless ``--allow-destructive`` is given. ``test_fault_campaigns`` breaks a running controller
through its chaos API (``--stack URL``, or one started on the emulator), and ``quality/`` pins
the verdicts of the NIST battery on fixed corpora. The pytest plugin (options and fixtures) is
:mod:`conformance.plugin`, registered as the ``pytest11`` entry point ``lokey``.
"""

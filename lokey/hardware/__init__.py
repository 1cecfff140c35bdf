"""The ATECC608A driver: bus protocol, pure packet framing and CRC, transport, typed commands."""

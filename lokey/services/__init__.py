"""LoKey's HTTP services: one FastAPI app factory per service, its settings, shared HTTP bits.

The top layer of the ``lokey`` package (with ``cli``): nothing below imports it. Apps are built
by a factory from a settings object and open their resources in the lifespan; importing a
module here opens nothing.
"""

"""``python -m bench._trivial --port P``: the trivial endpoints the API benchmark measures against.

The same server stack as a LoKey service (uvicorn, FastAPI, one process), answering with
prepared bytes: ``POST /bytes`` 100,000 bytes of octet-stream, ``POST /value`` a one-number JSON
array. Whatever the API reaches relative to these is what its own work (store, formats) costs.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

PAYLOAD = os.urandom(100_000)


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/bytes")
    async def payload() -> Response:
        return Response(PAYLOAD, media_type="application/octet-stream")

    @app.post("/value")
    async def value() -> Response:
        return Response(b"[3735928559]", media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(b"{}", media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""``python -m bench`` (``make bench``): run every benchmark; exit 1 if one misses its target."""

from __future__ import annotations

from bench import (
    bench_api,
    bench_battery,
    bench_controller,
    bench_driver,
    bench_emulator,
    bench_fortuna,
    bench_fortuna_http,
    bench_quality,
    bench_store,
    bench_virtio_pipe,
    bench_virtio_stream,
)


def main() -> int:
    results = [
        bench_emulator.main(),
        bench_driver.main(),
        bench_controller.main(),
        bench_fortuna.main(),
        bench_fortuna_http.main(),
        bench_virtio_pipe.main(),
        bench_virtio_stream.main(),
        bench_quality.main(),
        bench_battery.main(),
        bench_store.main(),
        bench_api.main(),
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

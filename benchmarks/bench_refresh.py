"""Lookup latency while refreshes swap the index, against the same server left alone.

    python benchmarks/bench_refresh.py [--duration 30] [--vertices 1200000] [--connections 4]

Writes a copy of the demo federation whose gas territory is one large polygon (``--vertices``;
1.2 M makes a 30 MB GeoJSON), then measures lookups near it, on ``--connections`` connections
back to back, in turn against:

- ``serve --seed DIR --refresh 3`` while the big GeoJSON changes every 3 s (the crawler re-reads
  it, writes a snapshot and the serving process swaps the new index in);
- ``serve --snapshot ROOT --refresh 1`` while ``coverlookup crawl DIR --snapshot ROOT`` rewrites
  ROOT every 3 s (a server watching a root that a crawl job replaces);
- the same ``serve --snapshot ROOT`` with no refresh: the floor.

Prints lookups, errors, p50, p99.9 and the worst latency of each, and how many times the floor's
worst each refreshing configuration's worst is. Any error is a failure: a refresh must never cost
an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a clone without installing

BIG = Path("meridiangas.example/cds/gas-territory.geojson")
CENTER = (43.7, -120.78)  # lat, lon: inside the big polygon
TOUCH_EVERY_S = 3.0


def write_federation(directory: Path, vertices: int) -> None:
    """The demo federation, with the gas territory replaced by a ring of ``vertices`` points."""
    from coverlookup import demo

    shutil.copytree(demo.federation_path(), directory)
    lat0, lon0 = CENTER
    ring = [
        [
            round(lon0 + 0.5 * math.cos(a) * (1 + 0.05 * math.sin(37 * a)), 7),
            round(lat0 + 0.4 * math.sin(a), 7),
        ]
        for a in (2 * math.pi * i / vertices for i in range(vertices))
    ]
    ring.append(ring[0])
    path = directory / BIG
    doc = orjson.loads(path.read_bytes())
    doc["features"][0]["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    path.write_bytes(orjson.dumps(doc))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def coverlookup(*args: str) -> list[str]:
    return [sys.executable, "-m", "coverlookup", *args]


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    from urllib.request import urlopen

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early: {' '.join(argv)}")
        try:
            with urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server not ready within 300 s: {' '.join(argv)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


async def drive(port: int, seconds: float, connections: int) -> tuple[list[float], int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def one(session: aiohttp.ClientSession, rng: random.Random) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            lat = CENTER[0] + rng.uniform(-0.3, 0.3)
            lon = CENTER[1] + rng.uniform(-0.3, 0.3)
            t0 = time.perf_counter()
            try:
                url = f"http://127.0.0.1:{port}/v1/lookup?lat={lat:.5f}&lon={lon:.5f}"
                async with session.get(url) as response:
                    await response.read()
                    errors += response.status != 200
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, random.Random(i)) for i in range(connections)))
    return latencies, errors


def touch_every(path: Path, seconds: float, stop_at: float, then: list[str] | None) -> None:
    """Change the big GeoJSON every ``seconds`` (and run ``then``, a crawl, after each change)."""
    while time.monotonic() + seconds < stop_at:
        time.sleep(seconds)
        with open(path, "ab") as fh:
            fh.write(b" ")
        if then:
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            subprocess.run(then, env=env, cwd=REPO, capture_output=True, check=False)


def measure(
    label: str,
    port: int,
    args: argparse.Namespace,
    changes: Path | None,
    then: list[str] | None = None,
) -> dict[str, float | int | str]:
    import threading

    asyncio.run(drive(port, 1.0, args.connections))  # warm-up: first answers, not refreshes
    stop_at = time.monotonic() + args.duration
    toucher = None
    if changes is not None:
        toucher = threading.Thread(
            target=touch_every, args=(changes, TOUCH_EVERY_S, stop_at, then), daemon=True
        )
        toucher.start()
    latencies, errors = asyncio.run(drive(port, args.duration, args.connections))
    if toucher is not None:
        toucher.join()
    latencies.sort()
    row = {
        "label": label,
        "lookups": len(latencies),
        "errors": errors,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p999": latencies[int(len(latencies) * 0.999)] * 1000,
        "max": latencies[-1] * 1000,
    }
    print(
        f"{label:46s} {row['lookups']:8d} {errors:6d} {row['p50']:8.1f} {row['p999']:8.1f} "
        f"{row['max']:8.0f}",
        flush=True,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per configuration")
    parser.add_argument("--vertices", type=int, default=1_200_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="coverlookup-bench-refresh-") as tmp:
        fed, root = Path(tmp) / "federation", Path(tmp) / "root"
        write_federation(fed, args.vertices)
        size = (fed / BIG).stat().st_size
        print(f"federation: gas territory of {args.vertices:,} vertices ({size / 2**20:.0f} MiB)")
        subprocess.run(
            coverlookup("crawl", str(fed), "--snapshot", str(root)),
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        heads = (("lookups", 8), ("errors", 6), ("p50 ms", 8), ("p99.9 ms", 8), ("max ms", 8))
        print("\n" + " " * 46 + " " + " ".join(f"{h:>{w}s}" for h, w in heads))
        crawl = coverlookup("crawl", str(fed), "--snapshot", str(root))
        configurations = [  # label, serve's arguments, the file that changes, what runs after
            ("no refresh (the floor)", ["--snapshot", str(root)], None, None),
            (
                "--snapshot --refresh 1, a crawl job rewriting",
                ["--snapshot", str(root), "--refresh", "1"],
                fed / BIG,
                crawl,
            ),
            (
                "--seed --refresh 3, the GeoJSON changing",
                ["--seed", str(fed), "--refresh", "3"],
                fed / BIG,
                None,
            ),
        ]
        rows = []
        for label, serve_args, changes, then in configurations:
            port = free_port()
            server = start(coverlookup("serve", *serve_args, "--port", str(port)), port)
            try:
                rows.append(measure(label, port, args, changes, then))
            finally:
                stop(server)
    floor = rows[0]["max"]
    print()
    for row in rows[1:]:
        print(
            f"{row['label']}: worst lookup {row['max'] / floor:.1f}x the floor's, "
            f"p99.9 {row['p999'] / rows[0]['p999']:.1f}x"
        )
    if any(row["errors"] for row in rows):
        print("FAIL: lookups failed while the index was swapped")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

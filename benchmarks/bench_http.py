"""HTTP throughput: ``/v1/lookup`` on the US territories vs a minimal aiohttp handler, same run.

    python benchmarks/bench_http.py [--duration 10] [--rounds 5] [--connections 32] [--skip-workers]
                                    [--scaling-reference]

Builds a snapshot of ``../shared/data/us-retail-territories/utilities-territories.geojson``
(one entry per territory) in a temporary directory, starts ``coverlookup serve`` on it (one process,
then ``--workers 2``) and, for comparison, a minimal aiohttp app answering a constant JSON body;
drives each over loopback with wrk (if installed; else an aiohttp client) on random US points and
prints requests/s, p50 and p99. Targets: one-process /v1/lookup >= 60% of the minimal handler's
requests/s; two workers >= 1.4x one process. The configurations take turns in rounds (each round
starting one later), and each ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import resource
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
SHARED = Path(os.environ.get("COVERLOOKUP_SHARED", REPO.parent / "shared"))
US_FILE = SHARED / "data" / "us-retail-territories" / "utilities-territories.geojson"
sys.path.insert(0, str(REPO))  # run from a clone without installing

US_BOX = (24.5, 49.4, -124.8, -66.9)  # south, north, west, east

WRK_SCRIPT = """
math.randomseed(%(seed)d)
request = function()
  local lat = %(south)f + math.random() * (%(north)f - %(south)f)
  local lon = %(west)f + math.random() * (%(east)f - %(west)f)
  return wrk.format("GET", string.format("%(path)s?lat=%%.5f&lon=%%.5f", lat, lon))
end
"""


def build_us_snapshot(root: Path) -> Path:
    """A snapshot with one geographic entry per US retail territory, as a crawl would store it."""
    from coverlookup.snapshot import snapshot_from_features, write_snapshot

    snap = snapshot_from_features(
        orjson.loads(US_FILE.read_bytes())["features"],
        server_url="https://territories.example/.well-known/cds-server-metadata.json",
        server_name="US territories",
        commodity_types=("electricity",),
        infrastructure_types=("distribution_utility",),
        country="US",
        seeds=[str(US_FILE)],
    )
    written = write_snapshot(root, snap)
    from coverlookup.index import CoverageIndex

    t0 = time.perf_counter()
    CoverageIndex.load(written)  # builds and saves the compiled index beside the snapshot
    print(
        f"built US snapshot: {len(snap.entries)} territories, index {time.perf_counter() - t0:.1f}s"
    )
    return written


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(argv: list[str], announcements: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen = 0
    assert proc.stderr is not None
    while seen < announcements:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"server exited early: {' '.join(argv)}")
        if "serving" in line:
            seen += 1
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def minimal_server(port: int, reuse_port: bool = False) -> None:
    """A minimal aiohttp app: one handler returning a constant JSON body."""
    from aiohttp import web

    body = orjson.dumps({"query": {"lat": 0, "lon": 0}, "matches": [], "snapshot": {"id": "x"}})

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/lookup", handler)
    print("serving minimal", file=sys.stderr, flush=True)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=reuse_port or None
    )


def run_wrk(
    url: str, path: str, duration: int, connections: int
) -> tuple[float, float, float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(
            WRK_SCRIPT
            % {
                "seed": 42,
                "south": US_BOX[0],
                "north": US_BOX[1],
                "west": US_BOX[2],
                "east": US_BOX[3],
                "path": path,
            }
        )
        script = fh.name
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        print(out)
        raise SystemExit("non-2xx responses during the benchmark")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, p50, p99, wrk_cpu_s / max(requests, 1) * 1e6


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


async def _aiohttp_load(
    url: str, duration: int, connections: int
) -> tuple[float, float, float, float]:
    import aiohttp

    rng = random.Random(42)
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            lat = rng.uniform(US_BOX[0], US_BOX[1])
            lon = rng.uniform(US_BOX[2], US_BOX[3])
            t0 = time.perf_counter()
            async with session.get(f"{url}/v1/lookup?lat={lat:.5f}&lon={lon:.5f}") as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"status {response.status}")
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        start_t = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - start_t
    latencies.sort()
    return (
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        math.nan,  # the client runs in this process: its CPU is not told apart
    )


def load(url: str, duration: int, connections: int) -> tuple[float, float, float, float]:
    if shutil.which("wrk"):
        return run_wrk(url, "/v1/lookup", duration, connections)
    return asyncio.run(_aiohttp_load(url, duration, connections))


def mean_batch(metrics_url: str) -> float | None:
    """Point lookups per batch so far, from the server's /metrics (None if it does not say)."""
    from urllib.request import urlopen

    with urlopen(metrics_url, timeout=10) as response:  # a loopback URL built here
        text = response.read().decode()
    found = dict(re.findall(r"^(coverlookup_lookup_batch\w+_total) (\d+)$", text, re.M))
    batches = int(found.get("coverlookup_lookup_batches_total", 0))
    answered = int(found.get("coverlookup_lookup_batched_total", 0))
    return answered / batches if batches else None


def process_cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process and its children that are still alive (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the parent pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds (medians are reported)"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument(
        "--scaling-reference",
        action="store_true",
        help="also run the minimal handler in 2 processes on one port: how far this machine "
        "lets any server scale with its load generator on the same cores",
    )
    parser.add_argument("--minimal-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    if args.minimal_server:
        minimal_server(args.minimal_server, args.reuse_port)
        return 0
    if not US_FILE.is_file():
        raise SystemExit(f"{US_FILE} not found (set COVERLOOKUP_SHARED)")
    print(
        f"load generator: {'wrk' if shutil.which('wrk') else 'aiohttp client'}, "
        f"{args.connections} connections, {args.rounds} interleaved rounds of {args.duration}s, "
        f"{os.cpu_count()} CPUs"
    )
    serve = [sys.executable, "-m", "coverlookup", "serve", "--snapshot"]
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        snapshot = str(build_us_snapshot(Path(tmp) / "us"))
        configs = [
            ("minimal aiohttp handler", [sys.executable, __file__, "--minimal-server"], 1),
            ("/v1/lookup, 1 process", [*serve, snapshot, "--port"], 1),
        ]
        if not args.skip_workers:
            configs.append(
                ("/v1/lookup, --workers 2", [*serve, snapshot, "--workers", "2", "--port"], 2)
            )
        servers: dict[str, tuple[list[subprocess.Popen[str]], int]] = {}
        try:
            for name, argv, announcements in configs:
                port = free_port()
                servers[name] = ([start([*argv, str(port)], announcements)], port)
            if args.scaling_reference:
                port = free_port()
                minimal = [sys.executable, __file__, "--reuse-port", "--minimal-server", str(port)]
                procs = [start(minimal, 1), start(minimal, 1)]
                servers["minimal handler, 2 processes"] = (procs, port)
            for _, port in servers.values():  # warm-up (also fills lazily built caches)
                load(f"http://127.0.0.1:{port}", 2, args.connections)
            # Interleaved rounds: other load on the machine hits every configuration alike. Each
            # round starts one configuration later, so none always runs first (or after another).
            samples: dict[str, list[tuple[float, ...]]] = {n: [] for n in servers}
            names = list(servers)
            for round_number in range(args.rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    procs, port = servers[name]
                    cpu0 = sum(process_cpu_s(proc.pid) for proc in procs)
                    t0 = time.perf_counter()
                    rps, p50, p99, load_us = load(
                        f"http://127.0.0.1:{port}", args.duration, args.connections
                    )
                    requests = rps * (time.perf_counter() - t0)
                    cpu1 = sum(process_cpu_s(proc.pid) for proc in procs)
                    cpu_us = (cpu1 - cpu0) / max(requests, 1) * 1e6
                    samples[name].append((rps, p50, p99, cpu_us, load_us))
            one_port = servers["/v1/lookup, 1 process"][1]
            batch = mean_batch(f"http://127.0.0.1:{one_port}/metrics")
        finally:
            for procs, _ in servers.values():
                for proc in procs:
                    stop(proc)
    print(
        f"\n{'':28s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'server CPU us/req':>18s}"
        f" {'load generator CPU us/req':>26s}"
    )
    for name, rows in samples.items():
        ordered = sorted(rows)
        rps, p50, p99, cpu_us, load_us = ordered[len(ordered) // 2]  # the median round
        print(f"{name:28s} {rps:8.0f} {p50:8.2f} {p99:8.2f} {cpu_us:18.1f} {load_us:26.1f}")
        print(f"{'':28s} rounds: {', '.join(f'{r[0]:.0f}' for r in rows)}")
    if batch is not None:
        print(f"\nmean lookups answered per batch (1 process, whole run): {batch:.1f}")

    def ratio(numerator: str, denominator: str) -> str:
        """The median of the rounds' ratios: both sides of each were measured minutes apart
        at most, so a slow spell of the machine cancels out (the rounds' ratios follow)."""
        each = [a[0] / b[0] for a, b in zip(samples[numerator], samples[denominator], strict=True)]
        return (
            f"{sorted(each)[len(each) // 2]:.2f}  (rounds: {', '.join(f'{r:.2f}' for r in each)})"
        )

    print(
        f"\n/v1/lookup / minimal handler: "
        f"{ratio('/v1/lookup, 1 process', 'minimal aiohttp handler')}  target >= 0.60"
    )
    if "/v1/lookup, --workers 2" in samples:
        print(
            f"--workers 2 / 1 process:      "
            f"{ratio('/v1/lookup, --workers 2', '/v1/lookup, 1 process')}  target >= 1.40"
        )
    if "minimal handler, 2 processes" in samples:
        print(
            f"minimal: 2 processes / 1:     "
            f"{ratio('minimal handler, 2 processes', 'minimal aiohttp handler')}"
            "  (how far this machine lets a constant handler scale)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

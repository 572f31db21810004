"""``coverlookup serve`` as a real process, and ``coverlookup lookup`` on the demo."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from coverlookup import demo
from coverlookup.cli import main

REPO = Path(__file__).resolve().parent.parent
MUNI_LAT, MUNI_LON = demo.POINT_IN_MUNICIPAL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class _Server:
    """``coverlookup serve`` in a subprocess; ready once it announces its address on stderr.

    A thread reads stderr into a queue, so every wait has a deadline (a test fails, never hangs)
    and no line is lost: ``lines`` keeps all of them, in order.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coverlookup", "serve", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.announced: list[str] = []
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def next_line(self, timeout: float = 60.0) -> str:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"serve said nothing for {timeout:g} s: {self.lines}") from None
        assert line is not None, f"serve exited early with {self.proc.wait()}: {self.lines}"
        self.lines.append(line)
        return line

    def remaining_lines(self) -> list[str]:
        """Every line not read yet, up to the end of stderr (after the process has exited)."""
        while (line := self._queue.get(timeout=60)) is not None:
            self.lines.append(line)
        self._queue.put(None)
        return self.lines

    def wait_serving(self, count: int = 1) -> None:
        while len(self.announced) < count:
            line = self.next_line()
            if "serving" in line:
                self.announced.append(line)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_serve_subprocess_answers_and_stops_on_sigterm() -> None:
    port = _free_port()
    server = _Server("--port", str(port))
    try:
        server.wait_serving()
        assert f"http://127.0.0.1:{port}" in server.announced[0]
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/readyz")[0] == 200
        status, answer = _get(f"{base}/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
        assert status == 200
        assert [m["id"] for m in answer["matches"]] == [
            "afmu-electric",
            "cbwd-district",
            "vcp-service-area",
            "mng-gas",
        ]
        status, error = _get(f"{base}/v1/lookup?lat=nan&lon=0")
        assert status == 400 and error["error"]["code"] == "invalid_coordinate"
    finally:
        code = server.stop()
    assert code == 0


def test_serve_workers_share_the_port() -> None:
    port = _free_port()
    server = _Server("--port", str(port), "--workers", "2")
    try:
        server.wait_serving(count=2)
        pids = {line.rsplit("pid ", 1)[1].rstrip(")\n") for line in server.announced}
        assert len(pids) == 2  # two processes, one port
        for _ in range(6):
            status, answer = _get(
                f"http://127.0.0.1:{port}/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}"
            )
            assert status == 200 and len(answer["matches"]) == 4
    finally:
        code = server.stop()
    assert code == 0


# --- lookup ---------------------------------------------------------------------------------------


def test_lookup_table_with_negative_longitude(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", str(MUNI_LAT), str(MUNI_LON)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "ENTITY",
        "TERRITORY",
        "TYPE",
        "COMMODITIES",
        "CAPABILITIES",
        "TO",
        "EDGE",
    ]
    assert [line.split("  ")[0] for line in out[1:5]] == [
        "Alder Falls Municipal Utilities",
        "Cedar Basin Water District",
        "Valley Clean Power",
        "Meridian Natural Gas",
    ]
    assert "water,wastewater" in out[2]
    assert out[-1].startswith("(snapshot ")


def test_lookup_json_matches_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    lat, lon = demo.POINT_IN_IOU
    assert main(["lookup", str(lat), str(lon), "--json", "--commodity", "electricity"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["query"] == {"lat": lat, "lon": lon, "commodity": "electricity"}
    assert [m["id"] for m in answer["matches"]] == ["mpl-electric"]
    assert answer["matches"][0]["links"]["ieee1547_setup"].endswith("/smart-inverters/setup")


def test_lookup_nothing_names_the_filters_and_radius(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", str(MUNI_LAT), str(MUNI_LON), "--commodity", "bogus"]) == 0
    out = capsys.readouterr().out
    assert f"No territory with commodity=bogus in this snapshot contains {MUNI_LAT:g}," in out
    assert main(["lookup", "0", "0", "--nearest-km", "10"]) == 0
    out = capsys.readouterr().out
    assert "No territory in this snapshot contains 0, 0 (none within 10 km either)." in out


def test_lookup_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    lat, lon = demo.POINT_OUTSIDE
    assert main(["lookup", str(lat), str(lon), "--nearest-km", "10"]) == 0
    out = capsys.readouterr().out
    assert f"Nothing contains {lat:g}, {lon:g}; nearest within 10 km:" in out
    assert "Meridian Power & Light" in out
    assert main(["lookup", str(lat), str(lon)]) == 0
    assert f"No territory in this snapshot contains {lat:g}, {lon:g}." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lookup", "abc", "-120"], "LAT must be a decimal number"),
        (["lookup", "95", "-120"], "lat must be between -90 and 90"),
        (["lookup", "43"], "give LAT and LON"),
        (["lookup", "43", "-120", "--nearest-km", "0"], "nearest_km must be above 0"),
        (["lookup", "43", "-120", "--snapshot", "/nonexistent/snap"], "no such snapshot"),
        # The parent loads the index the workers share: one error, not one per worker.
        (["serve", "--workers", "2", "--port", "9", "--snapshot", "/nonexistent/snap"], "no such"),
        (["serve", "--refresh", "60"], "--refresh needs --seed"),
        (["serve", "--seed", "x.example", "--refresh", "0"], "refresh interval must be above 0"),
        (["serve", "--seed", "x.example", "--refresh", "-1"], "refresh interval must be above 0"),
        (["serve", "--snapshot", "x", "--refresh", "nan"], "refresh interval must be above 0"),
        (["serve", "--seed", "/nonexistent/federation"], "not a URL, a domain, or an existing"),
        (["serve", "--port", "70000"], "not a port number"),
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2)
    assert len(err) == 1 and err[0].startswith("coverlookup: error: ") and message in err[0]
    usage = argv[0] == "serve" and "--snapshot" not in argv  # a missing snapshot is not usage
    if usage or "abc" in argv or "95" in argv or len(argv) == 2:
        assert code == 2


def test_serve_from_seeds_crawls_then_serves(tmp_path: Path) -> None:
    port = _free_port()
    server = _Server(
        "--port",
        str(port),
        "--seed",
        str(demo.federation_path()),
        "--snapshot",
        str(tmp_path / "snap"),
        "--refresh",
        "3600",
    )
    try:
        server.wait_serving()
        # The crawl runs in this process, the serving in a child of it (parsing documents must not
        # hold up lookups). A server that started before the crawl finished says "no index yet"
        # and then "ready"; one that started after serves the snapshot from the start.
        pid = int(server.announced[0].rsplit("pid ", 1)[1].rstrip(")\n"))
        assert pid != server.proc.pid
        if "no index yet (first crawl running)" in server.announced[0]:
            server.next_line()
        (snapshot_id,) = _snapshots_served(server.lines)
        base = f"http://127.0.0.1:{port}"
        status, answer = _get(f"{base}/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
        assert status == 200 and len(answer["matches"]) == 4
        assert answer["snapshot"]["id"] == snapshot_id
        refresh = _poll(  # the crawler records its crawl just after the snapshot appears
            lambda: (r := _get(f"{base}/v1/status")[1]["refresh"])["refreshes"] and r,
            "the first crawl's record",
        )
        assert refresh["enabled"] is True and refresh["refreshes"] == 1
        assert refresh["failures"] == 0 and refresh["last_error"] is None
    finally:
        code = server.stop()
    assert code == 0
    assert (tmp_path / "snap" / "current" / "manifest.json").is_file()


def test_serve_from_seeds_retries_a_failed_first_crawl(tmp_path: Path) -> None:
    # No --refresh: one crawl is all it needs, but it keeps trying until one works. Here the
    # snapshot cannot be written at first (a file where its directory goes).
    port, root = _free_port(), tmp_path / "snap"
    root.mkdir()
    (root / "snapshots").write_text("in the way")
    seed = str(demo.federation_path())
    server = _Server("--port", str(port), "--seed", seed, "--snapshot", str(root))
    try:
        server.wait_serving()
        base = f"http://127.0.0.1:{port}"
        failed = _poll(
            lambda: (r := _get(f"{base}/v1/status")[1]["refresh"])["failures"] and r,
            "the failed first crawl",
        )
        assert "snapshots" in failed["last_error"] and _get(f"{base}/readyz")[0] == 503
        (root / "snapshots").unlink()
        _poll(lambda: _get(f"{base}/readyz")[0] == 200, "a later crawl that works")
        body = _poll(  # the crawler records its crawl just after the snapshot appears
            lambda: (b := _get(f"{base}/v1/status")[1])["refresh"]["refreshes"] and b,
            "the working crawl's record",
        )
        assert body["source"] == f"seeds: {seed}"
        assert body["refresh"]["refreshes"] == 1 and body["refresh"]["last_error"] is None
    finally:
        code = server.stop()
    assert code == 0


@pytest.mark.parametrize("mode", [[], ["--workers", "2"], ["--seed", "demo"]])
def test_serve_on_a_port_in_use_is_one_line(
    mode: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    mode = [str(demo.federation_path()) if a == "demo" else a for a in mode]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), *mode])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"coverlookup: error: cannot listen on 127.0.0.1:{port}: address already in use"]


def test_serve_from_seeds_wants_a_snapshot_root_not_one_snapshot(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed, one = str(demo.federation_path()), str(demo.snapshot_path())
    assert main(["serve", "--seed", seed, "--snapshot", one]) == 2
    assert "is one snapshot; with --seed give the directory" in capsys.readouterr().err


def test_serve_from_seeds_needs_a_writable_snapshot_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    seed = str(demo.federation_path())
    code = main(["serve", "--seed", seed, "--snapshot", str(blocker / "snap")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to the snapshot directory" in err


def test_serve_from_seeds_leaves_no_temporary_snapshots(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    for wait_for_crawl in (False, True):  # stopped in the middle of a crawl, and after one
        server = _Server(
            "--port", str(_free_port()), "--seed", str(demo.federation_path()),
            env={"TMPDIR": str(tmp)},
        )  # fmt: skip
        try:
            server.wait_serving()
            if wait_for_crawl and "no index yet" in server.announced[0]:
                server.next_line()  # "ready: snapshot ..."
        finally:
            code = server.stop()
        assert code == 0
        assert list(tmp.iterdir()) == []


def test_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    port, tmp = _free_port(), tmp_path / "tmp"
    tmp.mkdir()
    server = _Server(
        "--port", str(port), "--seed", str(demo.federation_path()), env={"TMPDIR": str(tmp)}
    )  # fmt: skip
    try:
        server.wait_serving()
        worker = int(server.announced[0].rsplit("pid ", 1)[1].rstrip(")\n"))
        server.proc.kill()  # SIGKILL: it cannot pass anything on
        server.proc.wait(timeout=60)

        def gone() -> bool:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                return True
            return False

        _poll(gone, "the orphaned worker's exit", timeout=30)
        assert list(tmp.iterdir()) == []  # it removed what its parent would have
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def _snapshots_served(lines: list[str]) -> list[str]:
    """Snapshot ids from "serving snapshot X ..." and "ready: snapshot X" lines."""
    out = []
    for line in lines:
        if "serving snapshot " in line:
            out.append(line.split("serving snapshot ")[1].split()[0])
        elif line.startswith("coverlookup: ready: snapshot "):
            out.append(line.split()[-1])
    return out


def test_serve_workers_with_seeds_one_crawler_many_servers(tmp_path: Path) -> None:
    port = _free_port()
    root = tmp_path / "snap"
    root.mkdir()  # an earlier run's record of failed crawls is not this run's
    (root / "crawl-state.json").write_text('{"failures": 7, "consecutive_failures": 7}')
    server = _Server(
        "--port", str(port), "--workers", "2", "--seed", str(demo.federation_path()),
        "--snapshot", str(root), "--refresh", "3600",
    )  # fmt: skip
    try:
        server.wait_serving(count=2)
        # A worker that started before the crawl finished announces its snapshot when it
        # loads it (possibly before the other worker announced itself); one that started after
        # serves it from the start.
        while len(_snapshots_served(server.lines)) < 2:
            server.next_line()
        ready = _snapshots_served(server.lines)
        assert ready[0] == ready[1]
        assert [p.name for p in (root / "snapshots").iterdir()] == [ready[0]]
        status, answer = _get(f"http://127.0.0.1:{port}/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
        assert status == 200 and answer["snapshot"]["id"] == ready[0]
        # the crawler records its crawl just after the snapshot appears
        refresh = _poll(
            lambda: (
                (r := _get(f"http://127.0.0.1:{port}/v1/status")[1]["refresh"])["refreshes"] and r
            ),
            "the first crawl's record",
        )
        assert (refresh["refreshes"], refresh["failures"], refresh["last_error"]) == (1, 0, None)
    finally:
        code = server.stop()
    assert code == 0


def _metric(base: str, sample: str) -> float | None:
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def _poll(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g} s")
        time.sleep(0.2)


def test_serve_workers_report_all_requests_and_the_crawlers_failures(tmp_path: Path) -> None:
    seed = tmp_path / "federation"
    shutil.copytree(demo.federation_path(), seed)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _Server(
        "--port", str(port), "--workers", "2", "--seed", str(seed),
        "--snapshot", str(tmp_path / "snap"), "--refresh", "2",
    )  # fmt: skip
    try:
        server.wait_serving(count=2)
        while len(_snapshots_served(server.lines)) < 2:  # both workers serve the first crawl
            server.next_line()
        lookups = 24  # each on a connection of its own: the kernel spreads them over the workers
        for _ in range(lookups):
            status, _answer = _get(f"{base}/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
            assert status == 200
        ok = 'coverlookup_http_requests_total{route="/v1/lookup",status="200"}'
        # Whichever worker answers the scrape counts both workers' requests.
        _poll(lambda: _metric(base, ok) == lookups, f"{lookups} lookups in /metrics")
        assert _metric(base, "coverlookup_processes") == 2

        seed.rename(tmp_path / "gone")  # every crawl from now on fails
        _poll(
            lambda: _get(f"{base}/v1/status")[1]["refresh"]["consecutive_failures"] >= 1,
            "the crawl's failure in /v1/status",
        )
        for _ in range(4):  # through either worker
            refresh = _get(f"{base}/v1/status")[1]["refresh"]
            assert refresh["failures"] >= 1 and str(seed) in refresh["last_error"]
            assert refresh["this_process"]["consecutive_failures"] == 0  # it loads fine
            assert (_metric(base, "coverlookup_refresh_failures_total") or 0) >= 1
            status, answer = _get(f"{base}/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
            assert status == 200 and len(answer["matches"]) == 4  # the last good snapshot
    finally:
        code = server.stop()
    assert code == 0


def _raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (
            b"GET /v1/lookup?lat=1&lon=2&x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "a request line or header field is longer than 8190 bytes: '/v1/lookup?lat=1&lon=2",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            "longer than 8190 bytes: 'bbbb",
        ),
        (b"GET /healthz HTTP/1.1\r\n\r\n", "Missing 'Host' header"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "HTTPS traffic on an HTTP port"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n",
            "Content-Length can't be present with Transfer-Encoding",
        ),
        (
            b"HELLO / HTTP/1.1\r\nHost: x\r\n\r\n",
            "Invalid method encountered: b'HELLO / HTTP/1.1' ^",
        ),
    ],
    ids=["long-url", "long-header", "no-host", "tls", "smuggling", "bad-method"],
)
def test_unparsable_requests_get_the_error_shape_and_no_traceback(
    request_bytes: bytes, message: str
) -> None:
    port = _free_port()
    server = _Server("--port", str(port))
    try:
        server.wait_serving()
        status, headers, body = _raw_exchange(port, request_bytes)
        assert status == 400 and headers["Content-Type"].startswith("application/json")
        error = json.loads(body)["error"]
        assert error["code"] == "bad_http_request" and message in error["message"]
        assert "\n" not in error["message"]  # one line, for logs too
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # still serving
    finally:
        code = server.stop()
    assert code == 0
    assert "Traceback" not in "".join(server.remaining_lines())


def test_bodies_that_do_not_decode_are_not_logged_as_errors() -> None:
    port = _free_port()
    server = _Server("--port", str(port))
    garbage = bytes(range(256)) * 8
    head = "Host: x\r\nContent-Encoding: gzip\r\nContent-Type: text/csv\r\n"
    try:
        server.wait_serving()
        for start, status in (
            (f"GET /v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON} HTTP/1.1", 200),  # a body it ignores
            ("POST /nowhere HTTP/1.1", 404),
            ("POST /v1/lookup/batch?format=x HTTP/1.1", 400),  # refused before reading
            ("POST /v1/lookup/batch HTTP/1.1", 400),  # read, and does not decode
        ):
            request = (
                f"{start}\r\n{head}Content-Length: {len(garbage)}\r\nConnection: close\r\n\r\n"
            )
            got, headers, body = _raw_exchange(port, request.encode() + garbage)
            assert got == status and headers["Content-Type"].startswith("application/json")
            json.loads(body)
    finally:
        code = server.stop()
    assert code == 0
    logged = "".join(server.remaining_lines())
    assert "Traceback" not in logged and "ERROR" not in logged, logged

"""Crash safety: SIGKILL a process part-way through writing a snapshot, then load.

The child process counts the filesystem steps of ``write_snapshot`` (file writes, the rename of
the finished directory, the symlink swap) and kills itself with SIGKILL at a chosen step, so the
kill lands at exact, repeatable points rather than at a random time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coverlookup.model import Entry, Server
from coverlookup.snapshot import DocumentRecord, Snapshot, load_snapshot, write_snapshot

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from coverlookup import snapshot as snapmod
    from tests.test_discovery_crash import make_snapshot

    root, point, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = {"write": 0, "write-mid": 0, "rename": 0, "symlink": 0, "replace": 0}

    def step(kind):
        seen[kind] += 1
        if kind == point and seen[kind] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    real_write, real_rename = snapmod._write, os.rename
    real_symlink, real_replace = os.symlink, os.replace

    def write(path, data):
        step("write")
        seen["write-mid"] += 1
        if point == "write-mid" and seen["write-mid"] == nth:
            with open(path, "wb") as fh:  # half a file on disk, then death
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(path, data)

    def rename(a, b):
        step("rename")
        real_rename(a, b)

    def symlink(a, b, *args, **kwargs):
        step("symlink")
        real_symlink(a, b, *args, **kwargs)

    def replace(a, b):
        step("replace")
        real_replace(a, b)

    snapmod._write = write
    os.rename, os.symlink, os.replace = rename, symlink, replace
    snapmod.write_snapshot(root, make_snapshot("new", 40))
    print("finished")
    """
)


def make_snapshot(tag: str, count: int) -> Snapshot:
    """A snapshot with ``count`` entries, each with its own raw GeoJSON document."""
    server_url = f"https://{tag}.test/.well-known/cds-server-metadata.json"
    snap = Snapshot.new(seeds=[f"{tag}.test"])
    snap.servers.append(Server(metadata_url=server_url, shape="cds-2025", name=tag))
    for i in range(count):
        geo_url = f"https://{tag}.test/geo/{i}.geojson"
        body = (
            b'{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]],"i":'
            + str(i).encode()
            + b"}"
            + b" " * 4096
        )
        record = DocumentRecord(url=geo_url, kind="geojson", status=200)
        record.sha256 = snap.add_blob(body)
        record.size = len(body)
        snap.documents.append(record)
        snap.entries.append(
            Entry(
                server_url=server_url, id=f"{tag}-{i}", type="geographic", geojson_resource=geo_url
            )
        )
    return snap


def _assert_complete(root: Path, allowed: dict[str, str]) -> str:
    loaded = load_snapshot(root)
    assert loaded.id in allowed
    tag = allowed[loaded.id]
    count = 10 if tag == "old" else 40
    assert len(loaded.entries) == count
    assert {e.id for e in loaded.entries} == {f"{tag}-{i}" for i in range(count)}
    for entry in loaded.entries:
        body = loaded.geometry_bytes(entry)
        assert body is not None and body.endswith(b" " * 4096)
    return tag


@pytest.mark.parametrize(
    ("point", "nth", "expected"),
    [
        ("write", 1, "old"),  # before the first raw document
        ("write", 20, "old"),  # among the raw documents
        ("write-mid", 41, "old"),  # half of servers.json on disk
        ("write-mid", 43, "old"),  # half of the manifest on disk
        ("rename", 1, "old"),  # complete temporary directory, not yet renamed
        ("symlink", 1, "old"),  # renamed into place, not yet published
        ("replace", 1, "old"),  # new link made, not yet swapped in
        ("none", 0, "new"),  # no kill: the new snapshot is published
    ],
)
def test_sigkill_during_write_leaves_old_or_new(
    tmp_path: Path, point: str, nth: int, expected: str
) -> None:
    root = tmp_path / "root"
    old = make_snapshot("old", 10)
    old_id = old.id
    write_snapshot(root, old)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), point, str(nth)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if point == "none":
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "finished"
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    new_dirs = [p.name for p in (root / "snapshots").iterdir() if p.name != old_id]
    allowed = {old_id: "old"}
    allowed.update({name: "new" for name in new_dirs if not name.startswith(".")})
    assert _assert_complete(root, allowed) == expected

    # The next write after a crash succeeds and cleans up the half-written leftovers.
    again = make_snapshot("old", 10)
    write_snapshot(root, again)
    assert load_snapshot(root).id == again.id
    assert not [p for p in (root / "snapshots").iterdir() if p.name.startswith(".tmp-")]

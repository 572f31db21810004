"""Package-level promises: the public API resolves, and imports point one way."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import coverlookup


def test_all_names_resolve():
    for name in coverlookup.__all__:
        assert getattr(coverlookup, name) is not None, name


def test_errors_subclass_matching_builtins():
    from coverlookup import errors

    assert issubclass(errors.FetchError, OSError)
    assert issubclass(errors.SpecError, ValueError)
    assert issubclass(errors.CoordinateError, ValueError)
    assert issubclass(errors.NotFoundError, LookupError)
    for name in ("SpecError", "FetchError", "GeometryError", "SnapshotError", "UsageError"):
        assert issubclass(getattr(errors, name), errors.CoverlookupError)


# The pure core must not pull in the web stack or the CLI.
PURE = [
    "coverlookup.model",
    "coverlookup.cds",
    "coverlookup.openenergy",
    "coverlookup.validate",
    "coverlookup.snapshot",
    "coverlookup.geometry",
    "coverlookup.index",
]


@pytest.mark.parametrize("module", PURE)
def test_core_modules_do_not_import_web_or_cli(module):
    importlib.import_module(module)
    code = (
        f"import sys, {module}; "
        "bad = [m for m in ('aiohttp', 'coverlookup.web', 'coverlookup.cli') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

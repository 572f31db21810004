"""Shared fixtures. Real data is read from ../shared/data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("COVERLOOKUP_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    path = SHARED / "spec"
    if not path.is_dir():
        pytest.skip(f"shared specs not found at {path}")
    return path

"""Shared fixtures: the real face photographs used by tests live outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]


# Property tests explore fresh random examples on every developer run (that is how they find bugs), but CI
# must decide a change on its own merits: under CI=1 hypothesis draws the same examples every time.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def shared_data_dir() -> Path:
    """The test-data folder: $FDBENCH_TEST_DATA, else ../shared/data next to the repository."""
    return Path(os.environ.get("FDBENCH_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real face photographs; skips the test with the reason when they are absent."""
    root = shared_data_dir()
    if not (root / "faces").is_dir():
        pytest.skip(
            f"real face test data not found at {root} (set FDBENCH_TEST_DATA to the folder holding faces/)"
        )
    return root

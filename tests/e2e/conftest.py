"""Fixtures of the GIMP end-to-end tests (see harness.py for the environment variables)."""
from __future__ import annotations

import os

import harness
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end test against a real GIMP 3")


@pytest.fixture(scope="session")
def gimp():
    try:
        return harness.find_gimp(build=True)
    except harness.GimpUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and GIMP 3 is unavailable: {exc}")
        pytest.skip(str(exc))

"""Fixtures of the GIMP end-to-end tests (see harness.py for the targets and environment variables).

``gimp`` is parametrised over the targets: every e2e test runs once per GIMP version and pyzmq variant
(ids 3.0, 3.0-zmq, 3.2, 3.2-zmq). A target is skipped only where it cannot be built (no root or no
debootstrap) and CI is not set; with root and debootstrap, or CI=true, an unavailable GIMP fails."""
from __future__ import annotations

import os
import shutil

import harness
import pytest

TARGETS = harness.targets()


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end test against a real GIMP 3")


@pytest.fixture(scope="session", params=TARGETS, ids=[t.id for t in TARGETS])
def gimp(request):
    try:
        return harness.find_gimp(request.param, build=True)
    except harness.GimpUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and GIMP {request.param.id} is unavailable: {exc}")
        if request.param.zmq is not None and os.geteuid() == 0 and shutil.which("debootstrap"):
            pytest.fail(f"GIMP {request.param.id} is unavailable although root and debootstrap could build it: "
                        f"{exc}")
        pytest.skip(str(exc))

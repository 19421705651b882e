"""The engine's own checks of the edit's mode and texture scale (for the CLI, which does not go through the wire)
must be the ranges bridge/requests.py defines for the wire: one definition, checked here."""
from bridge import requests
from engine.edit import pipeline


def test_modes_and_scale_range_match_the_wire_definition():
    assert tuple(pipeline.MODES) == tuple(requests.MODES)
    assert (requests.SCALE.lo, requests.SCALE.hi) == pipeline.SCALE_RANGE

"""The server tests use the bridge tests' fake engine handler (tests/bridge/bridge_fakes.py) and process
(tests/bridge/bridge_fake_engine.py): the same doubles serve both ends' tests."""
import os
import sys

BRIDGE_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bridge")
if BRIDGE_TESTS not in sys.path:
    sys.path.insert(0, BRIDGE_TESTS)

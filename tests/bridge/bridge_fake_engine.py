"""Run an engine server with the fake handler (used by the subprocess tests).

    python tests/bridge/bridge_fake_engine.py --bind tcp://127.0.0.1:PORT [--step-time 0.1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), HERE]

from bridge_fakes import FakeHandler

from engine.cli.serve import add_serve_arguments, serve_main


def main() -> int:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    parser.add_argument("--step-time", type=float, default=0.0)
    parser.add_argument("--load-time", type=float, default=0.0)
    parser.add_argument("--fail-load", action="store_true")
    args = parser.parse_args()

    def factory(a: argparse.Namespace) -> FakeHandler:
        time.sleep(a.load_time)
        if a.fail_load:
            raise RuntimeError("fake weights not found")
        return FakeHandler(a.step_time)

    return serve_main(args, factory)


if __name__ == "__main__":
    sys.exit(main())

"""Runs `neural-collage` command lines one after the other in one process, for the CLI fuzz (importing torch and
loading the model once instead of per example).  Reads one JSON object per line on stdin (``argv``: the arguments, ``env``: variables set for that run); answers one JSON line
per run on stdout: the exit code, what the CLI wrote on stderr, and whether an exception escaped ``main`` (what
would be a traceback on a real command line).

    python tests/hostile/cli_runner.py  <  argv lines
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
import warnings


def cli_main():
    from engine.cli.parser import main

    return main


def run_one(argv: list[str]) -> dict:
    main = cli_main()
    err, out = io.StringIO(), io.StringIO()
    escaped = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - what the real command line would print as a traceback
            escaped = traceback.format_exc()
            code = 1
    return {"code": code, "stderr": err.getvalue()[-4000:], "stdout": out.getvalue()[-2000:], "escaped": escaped}


def main() -> int:
    real_stdout = sys.stdout
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for line in sys.stdin:
        job = json.loads(line)
        saved = {k: os.environ.get(k) for k in job["env"]}
        os.environ.update(job["env"])
        try:
            result = run_one(job["argv"])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        real_stdout.write(json.dumps(result) + "\n")
        real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

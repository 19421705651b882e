"""Fake engine handler for the bridge tests (no torch, no model).

- ``project``: ``steps`` steps of ``step_time`` seconds each, calling job.progress; recon = image
- ``swap``: inverts the image (max - value) where mask is set
- ``blend``: returns the reference image
- ``edit``: inverted image, optional recon
- the ``fail`` param makes ``run`` raise (OpError or RuntimeError)
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.serve.server import OpError

CLASSES = [{"id": i, "name": name} for i, name in enumerate(
    ["goldfish", "great white shark", "tabby cat", "golden retriever", "volcano", "daisy"])]


def invert(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.float32:
        return (1.0 - image).astype(np.float32)
    return (np.iinfo(image.dtype).max - image).astype(image.dtype)


class FakeHandler:
    def __init__(self, step_time: float = 0.0):
        self.step_time = step_time
        self.lock = threading.Lock()
        self.runs = []          # (op, request id)
        self.cancelled = []     # (request id, step at cancel request, step when stopped)
        self.active = 0
        self.max_active = 0

    def hello(self):
        return {"engine_version": "fake-0", "device": "cpu", "models": ["fake"], "default_model": "fake"}

    def classes(self, params):
        search = (params.get("search") or "").lower()
        return {"classes": [c for c in CLASSES if search in c["name"]]}

    def run(self, op, params, arrays, job):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.runs.append((op, job.id))
        try:
            return self._run(op, params, arrays, job)
        finally:
            with self.lock:
                self.active -= 1

    def _run(self, op, params, arrays, job):
        fail = params.get("fail")
        if fail == "op":
            raise OpError("bad_input", "fake handler refuses this input")
        if fail == "crash":
            raise RuntimeError("fake crash")
        if fail == "bad_result":
            return {}, {"image": np.zeros((2, 2), dtype=np.int16)}
        image = arrays["image"]
        steps = params.get("steps") or 0
        step_time = params.get("step_time", self.step_time)
        try:
            for step in range(1, steps + 1):
                job.progress("project", step, steps, 1.0 / step)
                if step_time:
                    time.sleep(step_time)
            job.progress("done", steps, steps, None)
        except Exception:
            with self.lock:
                self.cancelled.append((job.id, job.cancel_step, job.step))
            raise
        if op == "project":
            return {"class_id": 2, "class_name": "tabby cat", "loss": 0.5}, {"recon": image}
        if op == "swap":
            return {"target": params["target"]}, {"image": invert(image)}
        if op == "blend":
            return {}, {"image": arrays["reference"]}
        if op == "edit":
            out = {"image": invert(image)}
            if params.get("return_recon"):
                out["recon"] = image
            return {"source_class": 2, "labels": sorted(arrays)}, out
        raise OpError("unknown_op", op)

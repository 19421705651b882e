"""The engine behind the server: maps protocol ops (bridge/PROTOCOL.md) to photo edits on one loaded model.

Implements the handler contract of engine.serve.server: ``hello()``, ``classes(params)``,
``run(op, params, arrays, job)``.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from engine import __version__
from engine.classes import ClassLookupError, resolve_class, search_classes
from engine.device import select_device
from engine.generator import parse_layers
from engine.edit.pipeline import BlendSpec, EditError, PhotoEditor, SwapSpec

BAD_INPUT = "bad_input"


def _op_error(code: str, message: str) -> Exception:
    from engine.serve.server import OpError

    return OpError(code, message)


class Engine:
    def __init__(self, model: str | None = None, device: str = "auto"):
        from engine.models.registry import MissingWeights, load_model

        self.device = select_device(device)
        self.model_name = model or "default"
        try:
            self.bundle = load_model(self.model_name, self.device)
        except MissingWeights as exc:
            raise _op_error("model_missing", str(exc)) from None
        self.editor = PhotoEditor(self.bundle)
        self.names = self.bundle.class_names or self.bundle.generator.class_names()
        self._lock = threading.Lock()

    # -- cheap, main-thread ops --------------------------------------------------------------------------
    def hello(self) -> dict:
        from engine.models.registry import list_models

        return {"engine_version": __version__, "device": str(self.device), "model": self.model_name,
                "default_model": self.model_name, "resolution": self.bundle.resolution,
                "num_classes": len(self.names),
                "models": [{"name": m["name"], "present": m["present"], "resolution": m["resolution"],
                            "classes": m["classes"]} for m in list_models()]}

    def classes(self, params: dict) -> dict:
        self._check_model(params)
        return {"model": self.model_name, "classes": search_classes(self.names, params.get("search"))}

    # -- jobs --------------------------------------------------------------------------------------------
    def _check_model(self, params: dict) -> None:
        m = params.get("model")
        if m not in (None, "", self.model_name):
            raise _op_error(BAD_INPUT, f"this engine serves model {self.model_name!r}, not {m!r}: restart it with "
                                       f"`neural-collage serve --model {m}`")

    def _class(self, spec, what: str):
        if spec is None or spec == "":
            return None
        try:
            return resolve_class(self.names, spec)
        except ClassLookupError as exc:
            raise _op_error(BAD_INPUT, f"{what}: {exc}") from None

    def _layers(self, spec, n: int, what: str):
        try:
            parse_layers(spec, n, what)
        except ValueError as exc:
            raise _op_error(BAD_INPUT, str(exc)) from None
        return spec

    @staticmethod
    def _strength(v, what="strength") -> float:
        try:
            s = float(1.0 if v is None else v)
        except (TypeError, ValueError):
            raise _op_error(BAD_INPUT, f"{what} must be a number in [0, 1]") from None
        if not 0.0 <= s <= 1.0:
            raise _op_error(BAD_INPUT, f"{what} must be in [0, 1], got {s}")
        return s

    def _swap_spec(self, p: dict, arrays: dict) -> SwapSpec:
        from engine.collage.label import layer_count

        target = self._class(p.get("target"), "target class")
        labels = []
        for lab in p.get("labels") or []:
            if not isinstance(lab, dict) or "mask" not in lab:
                raise _op_error(BAD_INPUT, "each label needs a class and the name of its mask array")
            arr = arrays.get(lab["mask"])
            if arr is None:
                raise _op_error(BAD_INPUT, f"label mask array {lab['mask']!r} was not sent")
            c = self._class(lab.get("class"), "label class")
            if c is None:
                raise _op_error(BAD_INPUT, "a label has no class")
            labels.append((c, arr, self._strength(lab.get("strength"), "label strength")))
        if target is None:
            if not labels:
                raise _op_error(BAD_INPUT, "label swap needs a target class")
            target = labels[0][0]
        layers = self._layers(p.get("layers", "all"), layer_count(self.bundle.generator), "layer")
        return SwapSpec(target, self._strength(p.get("strength")), layers, labels)

    def _blend_spec(self, p: dict) -> BlendSpec:
        shift = p.get("shift") or [0, 0]
        try:
            dx, dy = (int(round(float(v))) for v in shift)
        except (TypeError, ValueError):
            raise _op_error(BAD_INPUT, "shift must be [dx, dy]") from None
        layers = self._layers(p.get("layers", "all"), len(self.bundle.generator.blend_sites()), "blend site")
        return BlendSpec(self._strength(p.get("strength")), layers, (dx, dy))

    def run(self, op: str, params: dict, arrays: dict[str, np.ndarray], job) -> tuple[dict, dict]:
        self._check_model(params)
        image = arrays.get("image")
        if image is None:
            raise _op_error(BAD_INPUT, f"{op} needs an 'image' array")
        p = dict(params)
        if op == "project":
            p.update({"swap": None, "blend": None, "return_recon": True})
        elif op == "swap":
            p = {**p, "swap": params, "blend": None}
        elif op == "blend":
            p = {**p, "swap": None, "blend": params}
        elif op != "edit":
            raise _op_error("unknown_op", f"the engine does not run {op!r}")
        swap = self._swap_spec(p["swap"], arrays) if p.get("swap") else None
        blend = self._blend_spec(p["blend"]) if p.get("blend") else None
        steps = p.get("steps", 200)
        if not isinstance(steps, int) or not 0 <= steps <= 5000:
            raise _op_error(BAD_INPUT, "steps must be a whole number in 0-5000")
        region = p.get("region")
        if region is not None and (not isinstance(region, (list, tuple)) or len(region) != 4):
            raise _op_error(BAD_INPUT, "region must be [x, y, w, h]")

        def progress(stage, step, total, loss):
            job.progress(stage, step, total, loss)

        with self._lock, torch.inference_mode(False):
            try:
                res = self.editor.edit(
                    np.array(image), arrays.get("mask"), region=region, swap=swap, blend=blend,
                    reference=arrays.get("reference"), reference_mask=arrays.get("reference_mask"),
                    source_class=self._class(p.get("source_class", p.get("class")), "source class"),
                    reference_class=self._class((p.get("blend") or {}).get("reference_class"), "reference class"),
                    steps=steps, poisson=bool(p.get("poisson", True)), cache_key=p.get("cache_key"),
                    return_recon=bool(p.get("return_recon")), progress=progress)
            except EditError as exc:
                raise _op_error(BAD_INPUT, str(exc)) from None
        out: dict[str, Any] = {"image": res.image}
        if res.recon is not None:
            out["recon"] = res.recon
        rp = {"source_class": self.names[res.source_class], "source_class_id": res.source_class,
              "loss": round(res.loss, 5)}
        if op == "project":  # the names bridge/PROTOCOL.md gives the projected class
            rp.update(class_id=res.source_class, class_name=self.names[res.source_class])
        if swap is not None:
            rp["target_class"] = self.names[swap.target]
        if res.reference_class is not None:
            rp["reference_class"] = self.names[res.reference_class]
        return rp, out

"""The engine behind the server: maps protocol ops (bridge/PROTOCOL.md) to photo edits on one loaded model.

Implements the handler contract of engine.serve.server: ``hello()``, ``classes(params)``,
``run(op, params, arrays, job)``. The request is parsed by ``bridge.requests`` (the one definition of every op's
params and ranges, shared with the plug-in and the server's check); what only the engine can know (class names,
the model's layer count, the photo edit's own checks) is checked here and raised as ``bridge.errors.EngineError``
with code ``bad_input``.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from bridge.errors import E_BAD_INPUT, E_MODEL_MISSING, E_TOO_LARGE, E_UNKNOWN_OP, EngineError
from bridge.protocol import short
from bridge.requests import BlendParams, ClassesRequest, EditReply, EditRequest, SwapParams, parse_request
from engine import __version__
from engine.classes import ClassLookupError, resolve_class, search_classes
from engine.device import select_device
from engine.generator import parse_layers
from engine.edit.pipeline import BlendSpec, BudgetError, Budgets, EditError, EditResult, PhotoEditor, SwapSpec

BAD_INPUT = E_BAD_INPUT


class Engine:
    def __init__(self, model: str | None = None, device: str = "auto", budgets: Budgets | None = None,
                 precision: str = "auto"):
        from engine.models.registry import MissingWeights, load_model

        self.device = select_device(device)
        self.model_name = model or "default"
        try:
            self.bundle = load_model(self.model_name, self.device)
        except MissingWeights as exc:
            raise EngineError(E_MODEL_MISSING, str(exc)) from None
        self.budgets = budgets or Budgets()
        self.precision = precision
        self.editor = PhotoEditor(self.bundle, budgets=self.budgets, precision=precision)
        self.names = self.bundle.class_names or self.bundle.generator.class_names()
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle, name: str = "default", budgets: Budgets | None = None) -> Engine:
        """An engine on an already loaded model (benchmarks and tests)."""
        self = cls.__new__(cls)
        self.device, self.model_name, self.bundle = bundle.generator.device, name, bundle
        self.budgets = budgets or Budgets()
        self.precision = "auto"
        self.editor = PhotoEditor(bundle, budgets=self.budgets, precision=self.precision)
        self.names = bundle.class_names or bundle.generator.class_names()
        self._lock = threading.Lock()
        return self

    def reset(self) -> None:
        """Called by the server when its watchdog replaced a stalled worker: the abandoned job may still hold the
        lock and the editor (its projection cache), so the next jobs get fresh ones (the model is shared)."""
        self._lock = threading.Lock()
        self.editor = PhotoEditor(self.bundle, budgets=self.budgets, precision=self.precision)

    # -- cheap, main-thread ops --------------------------------------------------------------------------
    def hello(self) -> dict:
        from engine.models.registry import list_models

        return {"engine_version": __version__, "device": str(self.device), "model": self.model_name,
                "default_model": self.model_name, "resolution": self.bundle.resolution,
                "num_classes": len(self.names),
                "models": [{"name": m["name"], "present": m["present"], "resolution": m["resolution"],
                            "classes": m["classes"]} for m in list_models()]}

    def classes(self, params: dict) -> dict:
        req = ClassesRequest.from_wire(params)
        self._check_model(req.model)
        return {"model": self.model_name, "classes": search_classes(self.names, req.search)}

    # -- jobs --------------------------------------------------------------------------------------------
    def _check_model(self, m: str | None) -> None:
        if m not in (None, "", self.model_name):
            raise EngineError(BAD_INPUT, f"this engine serves model {self.model_name!r}, not {short(m)}: restart it "
                                         "with `neural-collage serve --model NAME`")

    def _class(self, spec, what: str):
        if spec is None or spec == "":
            return None
        try:
            return resolve_class(self.names, spec)
        except ClassLookupError as exc:
            raise EngineError(BAD_INPUT, f"{what}: {exc}") from None

    def _layers(self, spec, n: int, what: str):
        try:
            parse_layers(spec, n, what)
        except ValueError as exc:
            raise EngineError(BAD_INPUT, str(exc)) from None
        return spec

    def _swap_spec(self, p: SwapParams) -> SwapSpec:
        from engine.collage.label import layer_count

        target = self._class(p.target, "target class")
        labels = []
        for lab in p.labels:
            c = self._class(lab.cls, "label class")
            if c is None:
                raise EngineError(BAD_INPUT, "a label has no class")
            labels.append((c, lab.mask, float(lab.strength)))
        if target is None:
            if not labels:
                raise EngineError(BAD_INPUT, "label swap needs a target class")
            target = labels[0][0]
        layers = self._layers(p.layers, layer_count(self.bundle.generator), "layer")
        return SwapSpec(target, float(p.strength), layers, labels, p.layer_strengths, p.match_colours is True)

    def _blend_spec(self, p: BlendParams) -> BlendSpec:
        layers = self._layers(p.layers, len(self.bundle.generator.blend_sites()), "blend site")
        return BlendSpec(float(p.strength), layers, (int(p.shift[0]), int(p.shift[1])), p.layer_strengths,
                         p.match_colours is not False)

    def run(self, op: str, params: dict, arrays: dict[str, np.ndarray], job) -> tuple[dict, dict]:
        req = parse_request(op, params, arrays)  # bad_request (EngineError) for what the bridge refuses
        if not isinstance(req, EditRequest):
            raise EngineError(E_UNKNOWN_OP, f"the engine does not run {op!r}")
        reply = self.edit(req, job)
        return reply.to_wire()

    def edit(self, req: EditRequest, job) -> EditReply:
        """Run one parsed edit request; ``job.progress(stage, step, total, loss)`` is called at every step, and
        ``job.preview(params, arrays)`` once with the fast result when a calibrated edit asked for a preview."""
        self._check_model(req.model)
        swap = self._swap_spec(req.swap) if req.swap is not None else None
        blend = self._blend_spec(req.blend) if req.blend is not None else None
        mode = req.mode or "calibrated"
        scale = 1.0 if req.scale is None else float(req.scale)
        want_preview = bool(req.preview) and mode == "calibrated"

        def progress(stage, step, total, loss):
            job.progress(stage, step, total, loss)

        with self._lock, torch.inference_mode(False):
            try:
                res = self.editor.edit(
                    np.array(req.image), req.mask, region=req.region, swap=swap, blend=blend,
                    reference=req.reference, reference_mask=req.reference_mask,
                    source_class=self._class(req.source_class, "source class"),
                    reference_class=self._class(req.blend.reference_class if req.blend else None, "reference class"),
                    steps=req.steps, poisson=req.poisson, cache_key=req.cache_key,
                    return_recon=req.return_recon, progress=progress, mode=mode, scale=scale,
                    preview_size=req.preview_size,
                    preview=(lambda r: job.preview(*self._reply(req, r, swap).to_wire())) if want_preview else None)
            except BudgetError as exc:
                raise EngineError(E_TOO_LARGE, str(exc)) from None
            except EditError as exc:
                raise EngineError(BAD_INPUT, str(exc)) from None
        return self._reply(req, res, swap)

    def _reply(self, req: EditRequest, res: EditResult, swap: SwapSpec | None) -> EditReply:
        """The result (or preview) of an edit.  ``resampled`` says whether the crop was resampled to the render
        size and back (fixed-size models, or crops above the engine's largest side); ``loss`` is null in fast mode
        (no calibration, nothing measured)."""
        reply = EditReply(image=res.image, recon=res.recon, source_class=self.names[res.source_class],
                          source_class_id=res.source_class,
                          loss=round(res.loss, 5) if res.loss == res.loss else None, mode=res.mode,
                          scale=res.scale, crop_size=res.crop_size, render_size=res.render_size,
                          resampled=res.resampled, preview=res.preview,
                          seconds={k: round(v, 3) for k, v in res.timings.items()})
        if req.op == "project":  # the names bridge/PROTOCOL.md gives the projected class
            reply.class_id, reply.class_name = res.source_class, self.names[res.source_class]
        if swap is not None:
            reply.target_class = self.names[swap.target]
        if res.reference_class is not None:
            reply.reference_class = self.names[res.reference_class]
        return reply

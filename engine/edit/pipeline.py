"""Editing real photos (paper §4, Fig. 5): crop the region of interest, project it onto the generator's
manifold, edit the latent's rendering with sCBN and/or feature blending, and Poisson-blend the edit back
into the full-resolution photo inside the (soft) mask.  Nothing outside the mask changes.

Used by the CLI (`swap`/`blend`/`project` with --input) and by the server's `edit` op.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from engine.arrays import PHOTO_DTYPES, mask_weights, plane, split_alpha
from engine.blend.feature import Reference, blend_site_weights
from engine.compose.colour import match_colours, shifted_pixels
from engine.compose.compose import compose
from engine.edit.budgets import BudgetError, Budgets, check_finite
from engine.edit.crops import Crop, CropError, region_from_mask
from engine.edit.reduce import reduce_inputs
from engine.edit.render import (
    EditOp,
    fully_convolutional,
    grid_of,
    render,
    scale_latent,
    shifted_window,
    window_of,
)
from engine.device import work_dtype
from engine.generator import ModelBundle
from engine.project.cache import ProjectionCache
from engine.project.projector import ProjectionResult, Projector
from engine.sites.scbn import Region

Progress = Callable[[str, int, int, float], None]
MIN_REGION = 16
MODES = ("fast", "calibrated")  # fast: the encoder's latent only; calibrated: + Adam steps on eq. 4
SCALE_RANGE = (0.25, 4.0)  # texture scale: 2 = the material's features twice as large
# calibrated mode's default steps at full resolution: 3 (sharpness >= 0.3 in 3 of 3 cases at 512 px, loss within
# 1-7 % of 5 steps' in 0.76 of their time; README "Edits at the photo's own resolution")
FULLRES_STEPS = 3
WINDOW_MIN = 256  # px: larger crops calibrate and render only the selection's box; smaller ones whole (one pass)
FULLRES_CONTEXT = 64  # px of context around the region at full resolution (at most 25 % of it; see PhotoEditor)
FIXED_STEPS = 200  # the default for fixed-size models, which calibrate at their own (small) resolution
MAX_SIDE = {"cpu": 2048, "cuda": 4096}  # largest crop side rendered at its own size; larger crops are resampled
TILE = {"cpu": 512, "cuda": 2048}  # render tiles (px): bound the memory; on CPU 512 px tiles were also faster
CALIBRATION_TILE = {"cpu": 1024, "cuda": 2048}  # calibration tiles (px): bound the backward pass's memory


class EditError(ValueError):
    """Bad input for a photo edit; the message is one clear line for the user."""


__all__ = ["BlendSpec", "BudgetError", "Budgets", "EditError", "EditResult", "PhotoEditor", "SwapSpec"]


@dataclass
class SwapSpec:
    target: int
    strength: float = 1.0
    layers: object = "all"
    labels: list[tuple[int, np.ndarray, float]] = field(default_factory=list)  # (class, photo-space map, strength)
    layer_strengths: list[float] | None = None  # one per sCBN layer, in [0, 1]; None = all ones
    # True: the photo's colour rendition (engine/compose/colour.py; a grey photo's new material stays grey, but a
    # class much lighter than the photo's can come out over-bright); False (default): the model's colours
    match_colours: bool = False


@dataclass
class BlendSpec:
    strength: float = 1.0
    layers: object = "all"
    shift: tuple[int, int] = (0, 0)  # image-space: reference content at p lands at p + shift
    layer_strengths: list[float] | None = None  # one per blend site, in [0, 1]; None = all ones
    match_colours: bool = True  # the reference's colours inside (engine/compose/colour.py); False: the model's


@dataclass
class EditResult:
    image: np.ndarray  # the full photo, edited inside the mask, same shape and dtype as the input
    recon: np.ndarray | None
    source_class: int
    loss: float  # the projection loss; NaN in fast mode (nothing was measured)
    reference_class: int | None = None
    mode: str = "calibrated"
    scale: float = 1.0
    crop_size: int = 0  # the square crop's side in photo pixels
    render_size: int = 0  # the side the generator rendered; != crop_size: the crop was resampled
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (crop, projection, render, compose)
    preview: bool = False  # True for the fast result sent ahead of the calibrated one

    @property
    def resampled(self) -> bool:
        return self.render_size != self.crop_size


def check_options(mode: str, scale: float, steps: int | None) -> None:
    """EditError (one line) for a mode, texture scale or step count the engine does not take."""
    if mode not in MODES:
        raise EditError(f"unknown mode {mode!r}: use fast or calibrated")
    try:
        ok = SCALE_RANGE[0] <= float(scale) <= SCALE_RANGE[1]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EditError(f"scale must be a number in [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}], got {scale!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise EditError(f"steps must be a whole number >= 0, got {steps!r}")


def _soft_mask(mask: np.ndarray) -> np.ndarray:
    m = plane(mask)
    if m.ndim != 2:
        raise EditError(f"the mask has shape {m.shape}: expected H x W")
    return mask_weights(m)


def to_model_input(crop01: np.ndarray, device) -> torch.Tensor:
    """[R, R, C] in [0, 1] (C = 1 or 3) -> [1, 3, R, R] in [-1, 1] (float photos far outside [0, 1] are clipped
    to [-1, 2] first: finite however large they are)."""
    x = crop01 if crop01.shape[2] == 3 else np.repeat(crop01[:, :, :1], 3, axis=2)
    if x.dtype.kind == "f" and x.size and (x.min() < -1.0 or x.max() > 2.0):
        x = np.clip(x, -1.0, 2.0)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float().to(device) * 2.0 - 1.0


def from_model_output(x: torch.Tensor, channels: int) -> np.ndarray:
    """[1, 3, R, R] in [-1, 1] -> [R, R, channels] in [0, 1] (gray: Rec. 601 luma)."""
    a = ((x[0].detach().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
    if channels == 1:
        return (a @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
    return a


def check_finite_result(*outputs: np.ndarray | None) -> None:
    """EditError if a float result holds NaN or infinities (finite input that overflowed on the way)."""
    for out in outputs:
        if out is not None and out.dtype.kind == "f" and not np.isfinite(out).all():
            raise EditError("the edit gave non-finite values: the image's values are too large to process")


class PhotoEditor:
    """The photo pipeline on one model.

    Fully convolutional models (a spatial latent) edit at the crop's own resolution: the crop is cut to a whole
    number of latent cells, encoded at its size divided by the texture scale, calibrated there (``mode``
    "calibrated", ``steps`` Adam steps in zeta-space; "fast": none), and the edit is rendered at the crop's size
    (in tiles for large crops), so no generated pixel is resampled up to ``max_side``.  Why this route, measured
    on 5 real texture photos at 256 and 512 px (README "Edits at the photo's own resolution"; sharpness = variance
    of the Laplacian of luminance of the reconstruction / of the photo): rendering at 128 px and resizing, as
    before, kept 0.05 / 0.01 of the photo's detail; calibrating a reduced copy (128 px) and carrying the latent
    change up 0.19 / 0.23; the calibrated reduced latent enlarged plus the encoder's fine detail 0.25 / 0.23
    (plus fresh noise 0.14); the encoder at full size alone (fast mode) 0.32 / 0.32; 5 calibration steps at full
    size 0.46 / 0.58 with the lowest projection loss (0.26 / 0.25 against 0.34 / 0.33 for the encoder alone).
    Fixed-size models (BigGAN-deep, SNGAN) work at their own resolution and the crop is resampled to it and back
    (``EditResult.resampled``)."""

    def __init__(self, bundle: ModelBundle, cache: ProjectionCache | None = None, max_work_size: int = 128,
                 max_side: int | None = None, tile: int | None = None, calibration_tile: int | None = None,
                 budgets: Budgets | None = None, context: int | None = FULLRES_CONTEXT, precision: str = "auto"):
        self.budgets = budgets or Budgets()
        self.context = context  # px of context per side at full resolution (None: 25 % of the region)
        self.b = bundle
        self.G = bundle.generator
        self.projector = Projector(bundle)
        self.cache = cache or ProjectionCache()
        self.max_work_size = max_work_size
        kind = "cuda" if self.G.device.type == "cuda" else "cpu"
        self.max_side = max_side or MAX_SIDE[kind]
        self.tile = tile or TILE[kind]
        self.calibration_tile = calibration_tile or CALIBRATION_TILE[kind]
        # the encoder and the calibration steps of the full-resolution path: bf16 where the device computes it
        # natively ("auto"), else float32; rendering is always float32 (engine.device.work_dtype)
        self.work_dtype = work_dtype(self.G.device, precision)

    @property
    def full_resolution(self) -> bool:
        """Whether this model renders crops at their own size (fully convolutional, spatial latent)."""
        return fully_convolutional(self.G)

    def default_steps(self, mode: str = "calibrated") -> int:
        if mode == "fast":
            return 0
        return FULLRES_STEPS if self.full_resolution else FIXED_STEPS

    @property
    def size(self) -> int:
        return self.G.resolution

    def work_size(self, side: int) -> int:
        """The resolution the crop is processed at: the model's own for fixed-size models; for fully
        convolutional (spatial-latent) models the crop's own size, rounded to the latent grid and clamped to
        [native, max_work_size], so textures keep their scale and detail instead of being upscaled."""
        if len(self.G.latent_shape()) != 3:
            return self.size
        grid = self.G.norm_sites()[0].stride
        r = int(round(side / grid)) * grid
        return max(self.size, min(r, max(self.max_work_size, self.size)))

    def crop_for(self, image: np.ndarray, mask: np.ndarray | None, region, multiple: int = 1,
                 max_context: int | None = None) -> Crop:
        """The square crop around ``region`` (else the mask's box, else the whole image): 25 % context on each
        side, at most ``max_context`` px when given (the full-resolution path)."""
        h, w = image.shape[:2]
        if region is None:
            if mask is None:
                region = (0, 0, w, h)
            else:
                try:
                    region = region_from_mask(mask)
                except CropError as exc:
                    raise EditError(str(exc)) from None
        try:
            return Crop.around(tuple(int(v) for v in region), image.shape, margin=0.25, min_size=MIN_REGION,
                               dtype=image.dtype, multiple=multiple, max_context=max_context)
        except CropError as exc:
            raise EditError(str(exc)) from None

    def project(self, x: torch.Tensor, class_id, steps: int, key: str | None, progress: Progress | None,
                stage: str = "projection") -> ProjectionResult:
        cached = self.cache.get(key)
        if cached is not None and (class_id is None or cached.class_id == class_id):
            if progress:
                progress(stage, steps, steps, cached.loss)
            return cached

        def prog(s, step, total, loss):
            if progress:
                progress(stage if s == "projection" else s, step, total, loss)

        res = self.projector.project(x, class_id=class_id, steps=steps, progress=prog)
        self.cache.put(key, res)
        return res

    def edit(
        self, image: np.ndarray, mask: np.ndarray | None = None, *, region=None, swap: SwapSpec | None = None,
        blend: BlendSpec | None = None, reference: np.ndarray | None = None, reference_region=None,
        reference_mask: np.ndarray | None = None,
        source_class: int | None = None, reference_class: int | None = None, steps: int | None = None,
        poisson: bool = True, cache_key: str | None = None, return_recon: bool = False,
        progress: Progress | None = None, latent: ProjectionResult | None = None, mode: str = "calibrated",
        scale: float = 1.0, preview: Callable[[EditResult], None] | None = None, preview_size: int | None = None,
    ) -> EditResult:
        """One photo edit, stage by stage: check the input, crop the region, project it (or take ``latent``),
        render the label collage (``swap``) and/or the feature blend (``blend``) from the latent, and compose the
        result back into the photo inside the mask.

        ``mode`` "fast" stops at the encoder's latent, "calibrated" adds ``steps`` calibration steps (default
        ``default_steps``); ``scale`` is the texture scale (fully convolutional models only); ``preview``, in
        calibrated mode, receives the fast result before the calibration starts.  ``preview_size`` N: the same edit
        on the inputs reduced so the image's longer side is at most N px (engine/edit/reduce.py); the result is that
        reduced image, and its projection is cached under ``cache_key`` + "|preview N", so a live preview projects
        once and then costs one render at that size per change."""
        t_start = time.perf_counter()
        if preview_size is not None:
            if latent is not None:
                raise EditError("a preview-size edit projects its own reduced crop: give no latent")
            small = reduce_inputs(int(preview_size), image, mask, swap, blend, reference, reference_mask, region,
                                  reference_region)
            image, mask = small.get("image", image), small.get("mask", mask)
            swap, blend = small.get("swap", swap), small.get("blend", blend)
            reference, reference_mask = small.get("reference", reference), small.get("reference_mask", reference_mask)
            region, reference_region = small.get("region", region), small.get("reference_region", reference_region)
            if cache_key is not None and small:
                cache_key = f"{cache_key}|preview{int(preview_size)}"
        image = np.asarray(image)
        soft = self.check(image, mask, blend, reference, self.budgets)
        check_options(mode, scale, steps)
        self.check_layer_strengths(swap, blend)
        steps = self.default_steps(mode) if (steps is None or mode == "fast") else steps
        if region is None and blend is not None and reference_mask is not None and reference_region is None:
            region = self.region_with_reference(soft, reference_mask)
        if self.full_resolution:
            return self._edit_full(image, soft, region, swap, blend, reference, reference_region, source_class,
                                   reference_class, steps, poisson, cache_key, return_recon, progress, latent, mode,
                                   float(scale), preview, t_start)
        if float(scale) != 1.0:
            raise EditError(f"texture scale needs a fully convolutional model; {self.b.name} renders "
                            f"{self.size} px only: use scale 1")
        # crop: the region (by default the selection's box, with the reference's feature when blending) -> R x R
        crop = self.crop_for(image, soft, region)
        color, _alpha = split_alpha(image)
        channels = 1 if color.ndim == 2 or color.shape[2] == 1 else 3
        R = self.work_size(crop.side)
        # budgets: what this request will compute, refused before any of it
        self.budgets.check_crop(crop.side)
        self.check_reaches(soft, crop)
        if swap is not None:
            self.budgets.check_labels(len(swap.labels))
        self.budgets.check_steps(0 if latent is not None else steps, R, 2 if blend is not None else 1)
        dev = self.G.device
        x = to_model_input(crop.extract(image, R), dev)
        t = {"crop": time.perf_counter() - t_start}
        # project
        t0 = time.perf_counter()
        proj = latent or self.project(x, source_class, steps, cache_key, progress)
        m = torch.from_numpy(crop.mask_to_crop(soft, R)).to(dev)
        z, cls = proj.z, proj.class_id
        regions = self.label_regions(swap, m, crop, R, soft.shape)
        ref = xr = None
        if blend is not None:
            ref, xr = self.reference(blend, reference, reference_region, reference_class, crop, R, m, soft.shape,
                                     steps, cache_key, progress)
        colours = self.colour_target(swap, blend, xr, crop.mask_to_crop(soft, R),
                                     ref.shift if ref is not None else (0, 0))
        t["projection"] = time.perf_counter() - t0
        # collage | blend
        t0 = time.perf_counter()
        op = self.edit_op(cls, swap, blend, regions, [ref] if ref is not None else [])
        with torch.no_grad():
            out_t = op.apply(self.G, z)
            recon_t = self.projector.generate(z, cls) if return_recon else None
        t["render"] = time.perf_counter() - t0
        result, recon = self.compose_both(image, crop, out_t, recon_t, channels, soft, poisson, t, colours, m)
        return EditResult(result, recon, cls, float(proj.loss), ref.class_id if ref is not None else None, mode,
                          1.0, crop.side, R, t)

    @staticmethod
    def take_colours(edited: np.ndarray, image: np.ndarray, crop: Crop, colours: tuple[np.ndarray | None, float],
                     mm: np.ndarray, shown) -> np.ndarray:
        """The colour step (engine/compose/colour.py).  A feature blend: the reference's colours where the
        reference shows (weight w x mask), the photo's where the photo's stream does (1 - w x mask).  A label swap
        (no reference pixels, w = 0; opt-in): the photo's colour rendition everywhere - the transfer from the
        reconstruction's colours to the photo's, fitted around the selection, applied to the new class too (a
        grey photo's new material comes out grey).  Not the default for swaps: the map is fitted on one class's
        colours and extrapolates to another's; on the grey grass photo swapped to gravel the inside came out at
        level 200 against 122 around it, with 12 % of it clipped, and grass on bark lost its blue channel."""
        ref_px, w = colours
        R = edited.shape[0]
        photo = crop.extract(image, R)  # the photo's colour channels, as many as the edit's
        around = mm <= 0.0
        if shown is not None:
            y0, y1, x0, x1 = shown
            rendered = np.zeros_like(around)
            rendered[y0:y1, x0:x1] = True
            around &= rendered
        wr = w * mm
        rows, cols = np.flatnonzero((mm > 0).any(1)), np.flatnonzero((mm > 0).any(0))
        if not rows.size:
            return edited
        # only the selection's pixels and their neighbours reach the photo (Poisson reads one pixel beyond)
        box = (max(0, rows[0] - 2), min(R, rows[-1] + 3), max(0, cols[0] - 2), min(edited.shape[1], cols[-1] + 3))
        transfers = [(edited[around], photo[around], 1.0 - wr)]
        if ref_px is not None:
            transfers.insert(0, (edited[mm >= 0.5], ref_px, wr))
        return match_colours(edited, transfers, box)

    def colour_target(self, swap: SwapSpec | None, blend: BlendSpec | None, xr: torch.Tensor | None,
                      mask: np.ndarray, shift: tuple[int, int]) -> tuple[np.ndarray | None, float] | None:
        """What the edit's colours are matched to (engine/compose/colour.py, :meth:`take_colours`).  A feature
        blend: the reference pixels whose features land in the selection (``mask``, the selection in the crop at
        the size of ``xr``, the reference crop as the model saw it; ``shift`` at that size) and the blend's weight
        at its last site (the share of the reference the result shows).  A label swap asking for the photo's
        colours: (None, 0.0).  None: the model's colours (``match_colours`` False, or a blend that leaves the
        last site to the base)."""
        if blend is None:
            return (None, 0.0) if swap is not None and swap.match_colours else None
        w = self.last_site_weight(blend)
        if not blend.match_colours or w <= 0.0:
            return None
        ref01 = (xr[0].detach().float().permute(1, 2, 0).cpu().numpy() + 1.0) / 2.0
        return shifted_pixels(ref01, mask, shift), w

    def last_site_weight(self, blend: BlendSpec) -> float:
        """The blend's weight at its last blend site (in forward order): the share of the reference the result
        shows inside the mask (the base stream shows in the rest)."""
        last = self.G.blend_sites()[-1].index
        return float(blend_site_weights(self.G, blend.layers, blend.strength, blend.layer_strengths).get(last, 0.0))

    def base_shows(self, blend: BlendSpec | None) -> bool:
        """Whether the base stream (the photo's own latent) shows inside the selection.  Not when a feature blend
        takes the last blend site (in forward order) at full weight: there eq. 3 replaces the base's features by
        the reference's wherever the mask is 1, and what follows that site (a normalisation and a 3x3
        convolution) sees only those, so the base shows only in the mask's feathered border (weighted M(1 - M)
        <= 1/4 after compositing).  Calibrated mode then calibrates the reference alone: on 5 real photos at
        512 px the results differed from calibrating both (in float32) about as much as bf16 steps differ from
        float32 ones (mean 5.8-15.7 vs 3.5-13.6 levels inside, both within the model's stochastic grain), with
        the same sharpness, in half the projection time (README, "Edits at the photo's own resolution")."""
        return blend is None or self.last_site_weight(blend) < 1.0

    def check_layer_strengths(self, swap: SwapSpec | None, blend: BlendSpec | None) -> None:
        """EditError (one line) unless each per-layer strength list has one value in [0, 1] per layer."""
        from engine.collage.label import check_layer_strengths, layer_count

        try:
            if swap is not None:
                check_layer_strengths(swap.layer_strengths, layer_count(self.G), "sCBN layer")
            if blend is not None:
                check_layer_strengths(blend.layer_strengths, len(self.G.blend_sites()), "blend site")
        except ValueError as exc:
            raise EditError(str(exc)) from None

    @staticmethod
    def edit_op(cls: int, swap: SwapSpec | None, blend: BlendSpec | None, regions: list[Region],
                references: list[Reference]) -> EditOp:
        """What to render: the swap's regions on its layers, the blend's references on its sites."""
        return EditOp(cls, regions, swap.layers if swap is not None else "all",
                      swap.layer_strengths if swap is not None else None, references,
                      blend.layers if blend is not None else "all", blend.strength if blend is not None else 1.0,
                      blend.layer_strengths if blend is not None else None)

    # -- full resolution (fully convolutional models) ---------------------------------------------------------
    def full_project(self, x: torch.Tensor, class_id: int | None, mode: str, steps: int, key: str | None,
                     progress: Progress | None, stage: str = "projection", start: ProjectionResult | None = None,
                     window: tuple[int, int, int, int] | None = None) -> ProjectionResult:
        """The latent of the crop ``x`` (at its size / scale): the fast start, then in calibrated mode ``steps``
        Adam steps at that size (in tiles above ``self.tile``; only in ``window``, the selection's box at this
        size, when given).  Without a class, the discriminator's ranking picks it (fast) or the usual short search
        on a copy at the model's native size does (calibrated)."""
        if mode == "fast" or steps == 0:
            window = None
        key = None if key is None else f"{key}|{mode}|{steps}|{x.shape[-1]}" + (f"|{window}" if window else "")
        cached = self.cache.get(key)
        if cached is not None and (class_id is None or cached.class_id == class_id):
            if progress:
                progress(stage, steps, steps, cached.loss)
            return cached
        if class_id is None:
            small = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="area") \
                if x.shape[-1] > self.size else x
            if mode == "fast" or steps == 0:
                class_id = self.projector.rank_classes(small, 1)[0]
            else:
                def search(s, step, total, loss):
                    if progress:
                        progress(s, step, total, loss)

                class_id = self.projector.project(small, steps=min(steps, 10), candidate_steps=10,
                                                  progress=search).class_id
        if start is None or start.class_id != class_id:
            start = self.projector.start(x, class_id, self.work_dtype)
        if mode == "fast" or steps == 0:
            if progress:
                progress(stage, 0, 0, None)
            res = start
        else:
            def prog(s, step, total, loss):
                if progress:
                    progress(stage, step, total, loss)

            res = self.projector.calibrate_tiled(x, class_id, steps, start=start, tile=self.calibration_tile,
                                                 grid=grid_of(self.G), progress=prog, window=window,
                                                 step_dtype=self.work_dtype)
        self.cache.put(key, res)
        return res

    def _edit_full(self, image, soft, region, swap, blend, reference, reference_region, source_class,
                   reference_class, steps, poisson, cache_key, return_recon, progress, latent, mode, scale, preview,
                   t_start) -> EditResult:
        g = grid_of(self.G)
        dev = self.G.device
        crop = self.crop_for(image, soft, region, multiple=g, max_context=self.context)
        S = crop.side
        R = S if self.max_side >= S else self.max_side // g * g  # above max_side: rendered smaller, resampled
        Sc = max(g, int(round(R / scale / g)) * g)  # the size the encoder and the calibration see
        # budgets: what this request will compute, refused before any of it
        self.budgets.check_crop(S)
        self.check_reaches(soft, crop)
        if swap is not None:
            self.budgets.check_labels(len(swap.labels))
        calibrating = mode == "calibrated" and latent is None
        self.budgets.check_steps(steps if calibrating else 0, Sc, 2 if blend is not None else 1)
        color, _alpha = split_alpha(image)
        channels = 1 if color.ndim == 2 or color.shape[2] == 1 else 3
        x = to_model_input(crop.extract(image, Sc), dev)
        m = torch.from_numpy(crop.mask_to_crop(soft, R)).to(dev)
        regions = self.label_regions(swap, m, crop, R, soft.shape)
        xr = None
        if blend is not None:
            rcrop = self.reference_crop(reference, reference_region, crop, soft.shape, self.context)
            self.budgets.check_crop(rcrop.side, "reference region")
            xr = to_model_input(rcrop.extract(np.asarray(reference), Sc), dev)
        t = {"crop": time.perf_counter() - t_start}
        if latent is not None and tuple(latent.z.shape[-2:]) != (Sc // g, Sc // g):
            raise EditError(f"the saved latent is {latent.z.shape[-1] * g} px but this crop needs {Sc} px: "
                            f"project the same region again")
        rkey = None if cache_key is None else cache_key + ":reference"
        # the blend's shift at the size the encoder, the calibration and the colour step see
        rshift = (int(round(blend.shift[0] * Sc / S)), int(round(blend.shift[1] * Sc / S))) \
            if blend is not None else (0, 0)
        colours = self.colour_target(swap, blend, xr, crop.mask_to_crop(soft, Sc), rshift)
        t0 = time.perf_counter()
        base = ref = None
        if preview is not None and mode == "calibrated" and latent is None:
            base = self.full_project(x, source_class, "fast", 0, cache_key, progress)
            if xr is not None:
                ref = self.full_project(xr, reference_class, "fast", 0, rkey, progress, "reference projection")
            t["projection"] = time.perf_counter() - t0
            preview(self._finish_full(image, soft, crop, base, ref, swap, blend, regions, m, R, S, channels,
                                      poisson, False, progress, "fast", scale, dict(t), True, colours))
            t0 = time.perf_counter()
        # crops above WINDOW_MIN px calibrate and render only the selection's box (with context): see render()
        win = window_of(torch.from_numpy(crop.mask_to_crop(soft, Sc)), g) if Sc > WINDOW_MIN else None
        base_mode = mode if self.base_shows(blend) else "fast"  # a full blend shows the reference, not the base
        proj = latent or self.full_project(x, source_class, base_mode, steps if base_mode == mode else 0, cache_key,
                                           progress, start=base, window=win)
        rproj = None
        if xr is not None:  # the reference is calibrated where the blend takes its features: the window, shifted
            rwin = shifted_window(win, rshift, tuple(xr.shape[-2:]), g)
            rproj = self.full_project(xr, reference_class, mode, steps, rkey, progress, "reference projection",
                                      start=ref, window=rwin)
        t["projection"] = t.get("projection", 0.0) + time.perf_counter() - t0
        if base_mode != mode and rproj is not None:  # the calibrated stream's loss is the edit's
            proj = replace(proj, loss=rproj.loss)
        return self._finish_full(image, soft, crop, proj, rproj, swap, blend, regions, m, R, S, channels, poisson,
                                 return_recon, progress, mode, scale, t, False, colours)

    def _finish_full(self, image, soft, crop, proj, rproj, swap, blend, regions, m, R, S, channels, poisson,
                     return_recon, progress, mode, scale, t, is_preview, colours=None) -> EditResult:
        """Render the edit of ``proj`` (and the reference ``rproj``) at R px and compose it into the photo."""
        g = grid_of(self.G)
        cells = (R // g, R // g)
        z = scale_latent(proj.z, cells)
        refs = []
        if rproj is not None:
            shift = (int(round(blend.shift[0] * R / S)), int(round(blend.shift[1] * R / S)))
            refs.append(Reference(scale_latent(rproj.z, cells), rproj.class_id, m, shift))
        t0 = time.perf_counter()
        op = self.edit_op(proj.class_id, swap, blend, regions, refs)
        win = window_of(m, g) if R > WINDOW_MIN else None  # only the selection's box is shown: render it alone
        out_t = render(self.G, z, op, tile=self.tile, progress=progress, window=win)
        recon_t = render(self.G, z, EditOp(proj.class_id), tile=self.tile, window=win) if return_recon else None
        t["render"] = time.perf_counter() - t0
        result, recon = self.compose_both(image, crop, out_t, recon_t, channels, soft, poisson, t, colours, m, win)
        loss = float(proj.loss) if proj.loss is not None else math.nan
        return EditResult(result, recon, proj.class_id, loss, rproj.class_id if rproj is not None else None, mode,
                          scale, S, R, t, is_preview)

    def compose_both(self, image, crop, out_t, recon_t, channels, soft, poisson, t, colours=None, m=None,
                     shown=None):
        """The compose stage of both paths: the edit (Poisson-blended or pasted) and, when rendered, the
        reconstruction (pasted) put back into the photo, timed into ``t['compose']``, checked to be finite.
        ``colours`` (from :meth:`colour_target`): first the edit takes the reference's colours inside the
        selection ``m`` (at the render size; weight m x the blend's weight at its last site) and the photo's
        colours where the photo's own stream shows (the rest of the weight), the latter fitted on the rendered
        pixels outside the selection (``shown``: the rendered box (y0, y1, x0, x1), None: all)."""
        t0 = time.perf_counter()
        edited = from_model_output(out_t, channels)
        if colours is not None:
            edited = self.take_colours(edited, image, crop, colours, m.detach().float().cpu().numpy(), shown)
            # the transfer has matched both sides of the border: Poisson blending would now only pull the inside
            # towards the border's colours, which near the selection mix both streams (grass blended into the
            # demo's brick wall came out orange: mean (157, 106, 27) against the meadow's (97, 117, 40), pasted
            # (96, 117, 38)); its correction is harmonic, so the edit's detail is the same either way
            poisson = False
        result = self.compose(image, crop, edited, soft, poisson)
        recon = self.compose(image, crop, from_model_output(recon_t, channels), soft, False) \
            if recon_t is not None else None
        t["compose"] = time.perf_counter() - t0
        check_finite_result(result, recon)
        return result, recon

    @staticmethod
    def check_reaches(soft: np.ndarray, crop: Crop) -> None:
        """EditError unless the selection reaches into the crop's box (a region beside the selection: nothing to
        edit there)."""
        bx, by, bw, bh = crop.inside
        if not (soft[by:by + bh, bx:bx + bw] > 0).any():
            raise EditError(f"the selection does not reach into the region ({bx}, {by}, {bw}, {bh}): nothing to "
                            "edit there")

    @staticmethod
    def check(image: np.ndarray, mask: np.ndarray | None, blend: BlendSpec | None,
              reference: np.ndarray | None, budgets: Budgets | None = None) -> np.ndarray:
        """The selection as H x W weights in [0, 1] (all ones without a mask); EditError for an image, mask or
        request the edit cannot use (BudgetError for one over the budgets)."""
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
            raise EditError(f"the image has shape {image.shape}: expected H x W or H x W x C with C in 1-4")
        if image.dtype not in PHOTO_DTYPES:
            raise EditError(f"unsupported image type {image.dtype}: use 8-bit, 16-bit or float images")
        if blend is not None and reference is None:
            raise EditError("feature blending needs a reference image")
        h, w = image.shape[:2]
        if budgets is not None:
            budgets.check_image(h, w)
            if reference is not None:
                budgets.check_image(*np.shape(reference)[:2], what="reference")
        try:
            check_finite(image, "image")
            if mask is not None:
                check_finite(mask, "mask")
            if reference is not None:
                check_finite(reference, "reference")
        except ValueError as exc:
            raise EditError(str(exc)) from None
        soft = _soft_mask(mask) if mask is not None else np.ones((h, w), np.float32)
        if soft.shape != (h, w):
            raise EditError(f"the mask is {soft.shape[1]}x{soft.shape[0]} but the image is {w}x{h}")
        if not (soft > 0).any():
            raise EditError("the selection/mask is empty: select the region to edit")
        return soft

    @staticmethod
    def region_with_reference(soft: np.ndarray, reference_mask: np.ndarray):
        """The box holding both the selection and the reference's feature region (a feature blend within
        one photo), or None when the reference mask does not fit the photo or is empty."""
        rm = _soft_mask(reference_mask)
        if rm.shape == soft.shape and (rm > 0).any() and (soft > 0).any():
            a, b = region_from_mask(soft), region_from_mask(rm)
            x0, y0 = min(a[0], b[0]), min(a[1], b[1])
            x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
            return (x0, y0, x1 - x0, y1 - y0)
        return None

    def label_regions(self, swap: SwapSpec | None, m: torch.Tensor, crop: Crop, R: int,
                      shape: tuple[int, int]) -> list[Region]:
        """The label collage's regions in crop space: the target class in the selection ``m``, then each extra
        label map (photo space, ``shape``) with its class."""
        regions = []
        if swap is None:
            return regions
        h, w = shape
        regions.append(Region(swap.target, m, swap.strength))
        for c, lab, s in swap.labels:
            try:
                check_finite(lab, "label map for class %d" % c)
            except ValueError as exc:
                raise EditError(str(exc)) from None
            lab_soft = _soft_mask(lab)
            if lab_soft.shape != (h, w):
                raise EditError(f"label map for class {c} is {lab_soft.shape[1]}x{lab_soft.shape[0]}, "
                                f"the image is {w}x{h}")
            regions.append(Region(c, torch.from_numpy(crop.mask_to_crop(lab_soft, R)).to(m.device), s))
        return regions

    def reference(self, blend: BlendSpec, reference: np.ndarray, reference_region, reference_class: int | None,
                  crop: Crop, R: int, m: torch.Tensor, shape: tuple[int, int], steps: int, cache_key: str | None,
                  progress: Progress | None) -> Reference:
        """The feature blend's reference stream: the reference photo's region (``reference_region``, else the
        edit's own crop of a photo of the same size) projected, its feature going into the selection ``m`` moved
        by the blend's shift (image pixels, scaled to the crop's resolution), and the reference crop as the model
        saw it (for its colours)."""
        ref_img = np.asarray(reference)
        rcrop = self.reference_crop(ref_img, reference_region, crop, shape)
        self.budgets.check_crop(rcrop.side, "reference region")
        xr = to_model_input(rcrop.extract(ref_img, R), m.device)
        rkey = None if cache_key is None else cache_key + ":reference"
        rproj = self.project(xr, reference_class, steps, rkey, progress, stage="reference projection")
        scale = R / crop.side
        shift = (int(round(blend.shift[0] * scale)), int(round(blend.shift[1] * scale)))
        return Reference(rproj.z, rproj.class_id, m, shift), xr

    def reference_crop(self, reference: np.ndarray, reference_region, crop: Crop, shape: tuple[int, int],
                       max_context: int | None = None) -> Crop:
        """The reference photo's crop: its ``reference_region``, else the edit's own crop (same-size photos)."""
        ref_img = np.asarray(reference)
        if reference_region is not None:
            return self.crop_for(ref_img, None, reference_region, max_context=max_context)
        if ref_img.shape[:2] != tuple(shape):
            raise EditError("the reference must have the image's size, or give its region")
        return crop

    @staticmethod
    def compose(image: np.ndarray, crop: Crop, edited01: np.ndarray, soft: np.ndarray, poisson: bool) -> np.ndarray:
        """Put the edited crop back (engine/compose): Poisson blending inside the mask, or a soft paste; only the
        crop box can change, so the mask is restricted to it; outside the mask the photo is returned byte for
        byte."""
        patch, xy = crop.to_photo(edited01, image.dtype)
        x, y, w, h = crop.inside
        m = np.zeros_like(soft)
        m[y:y + h, x:x + w] = soft[y:y + h, x:x + w]
        return compose(image, patch, xy, m, poisson)

"""Editing real photos (paper §4, Fig. 5): crop the region of interest, project it onto the generator's
manifold, edit the latent's rendering with sCBN and/or feature blending, and Poisson-blend the edit back
into the full-resolution photo inside the (soft) mask.  Nothing outside the mask changes.

Used by the CLI (`swap`/`blend`/`project` with --input) and by the server's `edit` op.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from engine.arrays import PHOTO_DTYPES, mask_weights, split_alpha
from engine.blend.feature import Reference, feature_blend
from engine.collage.label import label_swap
from engine.compose.compose import compose
from engine.edit.crops import Crop, CropError, region_from_mask
from engine.generator import ModelBundle
from engine.project.cache import ProjectionCache
from engine.project.projector import ProjectionResult, Projector
from engine.sites.scbn import Region

Progress = Callable[[str, int, int, float], None]
MIN_REGION = 16


class EditError(ValueError):
    """Bad input for a photo edit; the message is one clear line for the user."""


@dataclass
class SwapSpec:
    target: int
    strength: float = 1.0
    layers: object = "all"
    labels: list[tuple[int, np.ndarray, float]] = field(default_factory=list)  # (class, photo-space map, strength)


@dataclass
class BlendSpec:
    strength: float = 1.0
    layers: object = "all"
    shift: tuple[int, int] = (0, 0)  # image-space: reference content at p lands at p + shift


@dataclass
class EditResult:
    image: np.ndarray  # the full photo, edited inside the mask, same shape and dtype as the input
    recon: np.ndarray | None
    source_class: int
    loss: float
    reference_class: int | None = None


def _soft_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise EditError(f"the mask has shape {m.shape}: expected H x W")
    return mask_weights(m)


def to_model_input(crop01: np.ndarray, device) -> torch.Tensor:
    """[R, R, C] in [0, 1] (C = 1 or 3) -> [1, 3, R, R] in [-1, 1]."""
    x = crop01 if crop01.shape[2] == 3 else np.repeat(crop01[:, :, :1], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float().to(device) * 2.0 - 1.0


def from_model_output(x: torch.Tensor, channels: int) -> np.ndarray:
    """[1, 3, R, R] in [-1, 1] -> [R, R, channels] in [0, 1] (gray: Rec. 601 luma)."""
    a = ((x[0].detach().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
    if channels == 1:
        return (a @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
    return a


class PhotoEditor:
    def __init__(self, bundle: ModelBundle, cache: ProjectionCache | None = None, max_work_size: int = 128):
        self.b = bundle
        self.G = bundle.generator
        self.projector = Projector(bundle)
        self.cache = cache or ProjectionCache()
        self.max_work_size = max_work_size

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

    def crop_for(self, image: np.ndarray, mask: np.ndarray | None, region) -> Crop:
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
                               dtype=image.dtype)
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
        source_class: int | None = None, reference_class: int | None = None, steps: int = 200,
        poisson: bool = True, cache_key: str | None = None, return_recon: bool = False,
        progress: Progress | None = None, latent: ProjectionResult | None = None,
    ) -> EditResult:
        """One photo edit, stage by stage: check the input, crop the region, project it (or take ``latent``),
        render the label collage (``swap``) and/or the feature blend (``blend``) from the latent, and compose the
        result back into the photo inside the mask."""
        image = np.asarray(image)
        soft = self.check(image, mask, blend, reference)
        # crop: the region (by default the selection's box, with the reference's feature when blending) -> R x R
        if region is None and blend is not None and reference_mask is not None and reference_region is None:
            region = self.region_with_reference(soft, reference_mask)
        crop = self.crop_for(image, soft, region)
        color, _alpha = split_alpha(image)
        channels = 1 if color.ndim == 2 or color.shape[2] == 1 else 3
        R = self.work_size(crop.side)
        dev = self.G.device
        x = to_model_input(crop.extract(image, R), dev)
        # project
        proj = latent or self.project(x, source_class, steps, cache_key, progress)
        m = torch.from_numpy(crop.mask_to_crop(soft, R)).to(dev)
        z, cls = proj.z, proj.class_id
        with torch.no_grad():
            recon_t = self.projector.generate(z, cls)
            regions = self.label_regions(swap, m, crop, R, soft.shape)
            layers = swap.layers if swap is not None else "all"
        # collage | blend
        ref_cls = None
        if blend is not None:
            ref = self.reference(blend, reference, reference_region, reference_class, crop, R, m, soft.shape, steps,
                                 cache_key, progress)
            ref_cls = ref.class_id
            out_t = feature_blend(self.G, z, cls, [ref], layers=blend.layers, strength=blend.strength,
                                  regions=regions, scbn_layers=layers)
        elif regions:
            out_t = label_swap(self.G, z, cls, regions, layers=layers)
        else:
            out_t = recon_t
        # compose
        result = self.compose(image, crop, from_model_output(out_t, channels), soft, poisson)
        recon = self.compose(image, crop, from_model_output(recon_t, channels), soft, False) if return_recon else None
        return EditResult(result, recon, cls, float(proj.loss), ref_cls)

    @staticmethod
    def check(image: np.ndarray, mask: np.ndarray | None, blend: BlendSpec | None,
              reference: np.ndarray | None) -> np.ndarray:
        """The selection as H x W weights in [0, 1] (all ones without a mask); EditError for an image, mask or
        request the edit cannot use."""
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
            raise EditError(f"the image has shape {image.shape}: expected H x W or H x W x C with C in 1-4")
        if image.dtype not in PHOTO_DTYPES:
            raise EditError(f"unsupported image type {image.dtype}: use 8-bit, 16-bit or float images")
        if blend is not None and reference is None:
            raise EditError("feature blending needs a reference image")
        h, w = image.shape[:2]
        soft = _soft_mask(mask) if mask is not None else np.ones((h, w), np.float32)
        if soft.shape != (h, w):
            raise EditError(f"the mask is {soft.shape[1]}x{soft.shape[0]} but the image is {w}x{h}")
        if not (soft > 0).any():
            raise EditError("the selection/mask is empty: select the region to edit")
        return soft

    @staticmethod
    def region_with_reference(soft: np.ndarray, reference_mask: np.ndarray):
        """The box holding both the selection and the reference's feature region (a feature transplant within
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
        by the blend's shift (image pixels, scaled to the crop's resolution)."""
        ref_img = np.asarray(reference)
        rcrop = self.crop_for(ref_img, None, reference_region) if reference_region is not None else None
        if rcrop is None:
            if ref_img.shape[:2] != tuple(shape):
                raise EditError("the reference must have the image's size, or give its region")
            rcrop = crop
        xr = to_model_input(rcrop.extract(ref_img, R), m.device)
        rkey = None if cache_key is None else cache_key + ":reference"
        rproj = self.project(xr, reference_class, steps, rkey, progress, stage="reference projection")
        scale = R / crop.side
        shift = (int(round(blend.shift[0] * scale)), int(round(blend.shift[1] * scale)))
        return Reference(rproj.z, rproj.class_id, m, shift)

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

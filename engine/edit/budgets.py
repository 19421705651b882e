"""What one photo edit may cost, checked before the work: every request is bounded by what the engine will
compute, not only by the bytes it sent (a 1 x 16384 px image with its whole row selected is 48 KB on the wire
and would be a 24,576 px square crop).

* ``max_crop_side``: the side of the square crop (the region's longest side plus 25 % context on each side).
  The crop is resampled in float32 at full size on the way in and out: about 28 bytes per crop pixel (RGB).
* ``max_image_pixels``: the photo's own pixels (H x W): the selection mask, the paste back and Poisson work on
  arrays of the photo's size.
* ``max_step_pixels``: projection iterations x working pixels (R x R, the resolution the crop is processed at).
* ``max_labels``: extra label maps of one swap (each is a full-size mask resampled to the crop).

A request over a budget is refused with ``too_large`` and one sentence naming the limit and the `serve` option
that changes it.  NaN or infinite values in float images or masks are refused (``bad_input``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from bridge.errors import E_TOO_LARGE
from bridge.requests import MAX_LABELS, STEPS

DEFAULT_MAX_CROP_SIDE = 4096
DEFAULT_MAX_IMAGE_MP = 25.0
DEFAULT_MAX_STEP_PIXELS = int(STEPS.hi) * 256 * 256  # the longest projection at 256 px


class BudgetError(ValueError):
    """A request over one of the engine's budgets; ``code`` is the wire code (too_large)."""

    code = E_TOO_LARGE


@dataclass
class Budgets:
    max_crop_side: int = DEFAULT_MAX_CROP_SIDE
    max_image_pixels: int = int(DEFAULT_MAX_IMAGE_MP * 1e6)
    max_step_pixels: int = DEFAULT_MAX_STEP_PIXELS
    max_labels: int = MAX_LABELS

    def check_image(self, h: int, w: int, what: str = "image") -> None:
        if h * w > self.max_image_pixels:
            raise BudgetError(f"the {what} is {w}x{h} px ({h * w / 1e6:.1f} MP), more than the engine's limit of "
                              f"{self.max_image_pixels / 1e6:g} MP (neural-collage serve --max-image-mp): send "
                              "the selection's surroundings only")

    def check_crop(self, side: int, what: str = "selection") -> None:
        if side > self.max_crop_side:
            raise BudgetError(f"the {what} needs a {side} px square crop, more than the engine's limit of "
                              f"{self.max_crop_side} px (neural-collage serve --max-crop-side): select a region "
                              f"at most {int(self.max_crop_side / 1.5)} px on its longest side")

    def check_steps(self, steps: int, work_size: int, streams: int = 1) -> None:
        cost = int(steps) * work_size * work_size * streams
        if cost > self.max_step_pixels:
            raise BudgetError(f"{steps} projection steps at {work_size}x{work_size} px"
                              f"{' for %d images' % streams if streams > 1 else ''} exceed the engine's limit of "
                              f"{self.max_step_pixels:,} step-pixels (neural-collage serve --max-step-pixels): "
                              "ask for fewer steps")

    def check_labels(self, n: int) -> None:
        if n > self.max_labels:
            raise BudgetError(f"{n} label maps, more than the engine's limit of {self.max_labels} "
                              "(neural-collage serve --max-labels)")


def check_finite(arr, what: str) -> None:
    """Refuse NaN and infinities in a float image or mask (they would spread through the whole selection)."""
    a = np.asarray(arr)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"the {what} holds {bad} NaN or infinite value(s): send finite numbers")


def add_budget_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--max-crop-side", type=int, default=DEFAULT_MAX_CROP_SIDE, metavar="PX",
                        help="largest square crop an edit may need, in pixels: about 28 bytes of memory per crop "
                             "pixel (default %(default)s: regions up to ~2700 px)")
    parser.add_argument("--max-image-mp", type=float, default=DEFAULT_MAX_IMAGE_MP, metavar="MP",
                        help="largest photo an edit may send, in megapixels (default %(default)s)")
    parser.add_argument("--max-step-pixels", type=int, default=DEFAULT_MAX_STEP_PIXELS, metavar="N",
                        help="projection steps x working pixels one request may ask for (default %(default)s: "
                             "5000 steps at 256 px)")
    parser.add_argument("--max-labels", type=int, default=MAX_LABELS, metavar="N",
                        help="extra label maps one swap may carry (default and protocol maximum %(default)s)")
    return parser


def budgets_from_args(args) -> Budgets:
    return Budgets(max_crop_side=int(getattr(args, "max_crop_side", DEFAULT_MAX_CROP_SIDE)),
                   max_image_pixels=int(float(getattr(args, "max_image_mp", DEFAULT_MAX_IMAGE_MP)) * 1e6),
                   max_step_pixels=int(getattr(args, "max_step_pixels", DEFAULT_MAX_STEP_PIXELS)),
                   max_labels=min(MAX_LABELS, int(getattr(args, "max_labels", MAX_LABELS))))

"""engine/edit/budgets.py: what one edit may cost, refused before the work with a message naming the limit."""
from __future__ import annotations

import numpy as np
import pytest

from engine.edit.budgets import BudgetError, Budgets, check_finite
from engine.edit.crops import Crop


def test_thin_row_needs_a_crop_over_the_default_side():
    crop = Crop.around((0, 0, 16384, 1), (1, 16384))
    assert crop.side == 24576
    with pytest.raises(BudgetError, match=r"24576 px square crop.*--max-crop-side"):
        Budgets().check_crop(crop.side)
    Budgets(max_crop_side=30000).check_crop(crop.side)


def test_each_budget_names_its_option():
    b = Budgets(max_crop_side=100, max_image_pixels=1000, max_step_pixels=64 * 64 * 10, max_labels=2)
    with pytest.raises(BudgetError, match="--max-image-mp"):
        b.check_image(40, 40)
    b.check_image(10, 100)
    with pytest.raises(BudgetError, match="--max-step-pixels"):
        b.check_steps(11, 64)
    b.check_steps(10, 64)
    with pytest.raises(BudgetError, match="for 2 images"):
        b.check_steps(6, 64, streams=2)
    with pytest.raises(BudgetError, match="--max-labels"):
        b.check_labels(3)
    assert BudgetError.code == "too_large"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_refused(value):
    a = np.zeros((4, 4), np.float32)
    a[1, 2] = value
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        check_finite(a, "mask")
    check_finite(np.zeros((4, 4), np.uint8), "mask")  # integers are always finite

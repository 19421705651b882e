"""The colour step of a feature blend (engine/compose/colour.py): the linear colour transfer matches the target's
mean and covariance, moves nothing where its weight is 0, maps to grey for a grey target, and takes the reference
pixels the blend's shift points at; in the pipeline a grey photo blended with a grey reference stays grey."""
import numpy as np
import pytest

from engine.compose.colour import linear_transfer, match_colours, shifted_pixels


def test_linear_transfer_matches_mean_and_covariance():
    rng = np.random.default_rng(0)
    src = rng.normal([0.3, 0.5, 0.2], 0.05, (5000, 3)) @ np.array([[1, 0.3, 0], [0, 1, 0.2], [0, 0, 1]])
    dst = rng.normal([0.6, 0.4, 0.5], [0.1, 0.02, 0.07], (4000, 3))
    A, t = linear_transfer(src, dst, eps=0.0)
    moved = src @ A.T + t
    assert np.allclose(moved.mean(0), dst.mean(0), atol=1e-9)
    assert np.allclose(np.cov(moved.T), np.cov(dst.T), atol=1e-6)
    assert np.allclose(A, A.T, atol=1e-9)  # the Monge-Kantorovich map is symmetric positive semi-definite
    with pytest.raises(ValueError, match="same channels"):
        linear_transfer(src, dst[:, :2])


def test_match_colours_weights_grey_target_and_small_sides():
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal([0.6, 0.3, 0.7], 0.1, (40, 40, 3)), 0, 1).astype(np.float32)  # violet texture
    grey = np.repeat(rng.uniform(0.3, 0.6, (500, 1)), 3, axis=1)
    w = np.zeros((40, 40))
    w[:, 20:] = 1.0
    out = match_colours(img, [(img[:, 20:].reshape(-1, 3), grey, w)])
    assert out.dtype == np.float32 and np.array_equal(out[:, :20], img[:, :20])  # weight 0: untouched
    inside = out[:, 20:].reshape(-1, 3)
    assert np.ptp(inside, axis=1).max() < 0.02 < np.ptp(img[:, 20:].reshape(-1, 3), axis=1).min()  # grey now
    assert abs(inside.mean() - grey.mean()) < 0.01
    lum = img[:, 20:].reshape(-1, 3) @ [0.299, 0.587, 0.114]
    assert np.corrcoef(lum, inside[:, 0])[0, 1] > 0.5  # the texture is kept, only its colours move
    assert np.array_equal(match_colours(img, [(img[:3, :3].reshape(-1, 3), grey, w)]), img)  # < 16 pixels: skipped
    assert np.array_equal(match_colours(img, [(np.zeros((0, 3)), grey, w)]), img)  # none (all selected): skipped
    one = match_colours(img[:, :, :1], [(img[:, 20:, :1].reshape(-1, 1), grey, w)])  # a grey photo, colour target
    assert one.shape == (40, 40, 1) and abs(one[:, 20:].mean() - grey.mean()) < 0.01


def test_shifted_pixels_take_the_pixels_the_shift_moves_in():
    ref = np.arange(10 * 10 * 3, dtype=np.float64).reshape(10, 10, 3)
    mask = np.zeros((10, 10))
    mask[4:6, 4:6] = 1.0
    assert np.array_equal(shifted_pixels(ref, mask, (0, 0)), ref[4:6, 4:6].reshape(-1, 3))
    # content at p lands at p + (dx, dy): the mask's pixel p shows the reference's p - (dx, dy)
    assert np.array_equal(shifted_pixels(ref, mask, (3, -2)), ref[6:8, 1:3].reshape(-1, 3))
    assert shifted_pixels(ref, mask, (9, 0)).shape == (0, 3)  # moved out of the crop

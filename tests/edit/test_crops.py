"""Tests for engine/edit/crops.py (region of interest <-> GAN resolution, paper §4)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.arrays import split_alpha
from engine.edit.crops import Crop, CropError, from_unit_float, region_from_mask, to_unit_float


def photo(h: int, w: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """Smooth-ish test photo of the dtype's range."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(channels)], axis=2) * 0.4 + 0.5
    base = np.clip(base + r.normal(0, 0.03, base.shape), 0, 1)
    if dtype == np.uint8:
        return np.rint(base * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.rint(base * 65535).astype(np.uint16)
    return base.astype(dtype)


def contains(crop: Crop, region) -> bool:
    x, y, w, h = region
    return crop.x0 <= x and crop.y0 <= y and x + w <= crop.x0 + crop.side and y + h <= crop.y0 + crop.side


# --------------------------------------------------------------------------- geometry


def test_centred_box_with_margin():
    c = Crop.around((100, 80, 40, 40), (400, 600))
    assert c.side == 60  # 40 * (1 + 2 * 0.25)
    assert (c.x0, c.y0) == (90, 70)
    assert c.inside == (90, 70, 60, 60) and c.pad == (0, 0, 0, 0) and not c.padded


def test_non_square_regions():
    c = Crop.around((50, 60, 80, 20), (300, 300), margin=0.5)
    assert c.side == 160
    assert contains(c, (50, 60, 80, 20))
    # centred on the region's centre (90, 70) horizontally, shifted down to stay inside vertically
    assert (c.x0, c.y0) == (10, 0)
    tall = Crop.around((10, 10, 20, 90), (300, 300), margin=0)
    assert tall.side == 90 and contains(tall, (10, 10, 20, 90))
    assert Crop.around((10, 10, 20, 90), (300, 300), margin=0.1).side == 108


@pytest.mark.parametrize(
    "region",
    [
        (0, 0, 40, 30),  # top-left corner
        (260, 0, 40, 30),  # top-right
        (0, 170, 40, 30),  # bottom-left
        (260, 170, 40, 30),  # bottom-right
        (120, 0, 50, 20),  # top edge
        (120, 180, 50, 20),  # bottom edge
        (0, 80, 20, 50),  # left edge
        (280, 80, 20, 50),  # right edge
    ],
)
def test_regions_at_borders_and_corners(region):
    H, W = 200, 300
    c = Crop.around(region, (H, W))
    assert c.side == round(max(region[2:]) * 1.5)
    # shifted inside the photo, no padding needed
    assert c.x0 >= 0 and c.x0 + c.side <= W and c.y0 >= 0 and c.y0 + c.side <= H
    assert c.pad == (0, 0, 0, 0)
    assert contains(c, region)
    img = photo(H, W)
    x = c.extract(img, c.side)
    x0, y0 = c.x0, c.y0
    np.testing.assert_array_equal(from_unit_float(x, np.uint8), img[y0 : y0 + c.side, x0 : x0 + c.side])


def test_region_partly_outside_is_clipped_and_outside_rejected():
    c = Crop.around((-10, -10, 40, 40), (100, 100))
    assert contains(c, (0, 0, 30, 30))
    with pytest.raises(CropError, match="lies outside the 100x80 image"):
        Crop.around((120, 10, 30, 30), (80, 100))
    with pytest.raises(CropError, match="lies outside"):
        Crop.around((-50, 10, 30, 30), (80, 100))


def test_tiny_region_message():
    with pytest.raises(CropError) as e:
        Crop.around((5, 5, 9, 7), (100, 100))
    assert (
        str(e.value) == "The region is 9x7 px; Neural Collage needs at least 16 px: select a larger region."
    )
    assert isinstance(e.value, ValueError)
    Crop.around((5, 5, 16, 3), (100, 100))  # longest side counts
    with pytest.raises(CropError, match="at least 32 px"):
        Crop.around((5, 5, 20, 20), (100, 100), min_size=32)


def test_empty_mask_message():
    with pytest.raises(CropError) as e:
        region_from_mask(np.zeros((20, 30), np.uint8))
    assert str(e.value) == "The selection/mask is empty: select the region to edit."
    with pytest.raises(CropError, match="empty"):
        region_from_mask(np.full((4, 4), 0.2), threshold=0.5)


def test_region_from_mask():
    m = np.zeros((50, 60), np.uint8)
    m[10:20, 30:45] = 255
    m[25, 5] = 1
    assert region_from_mask(m) == (5, 10, 40, 16)
    assert region_from_mask(m, threshold=1) == (30, 10, 15, 10)
    assert region_from_mask(m[:, :, None] > 0) == (5, 10, 40, 16)
    c = Crop.for_mask(m, margin=0)
    assert c.side == 40


# --------------------------------------------------------------------------- padding


def test_padding_when_photo_is_smaller_than_the_square():
    img = photo(30, 120, dtype=np.uint16)
    region = (40, 2, 40, 26)  # side 60 > photo height 30
    c = Crop.around(region, img.shape)
    assert c.side == 60
    assert c.inside == (c.x0, 0, 60, 30)
    top, bottom, left, right = c.pad
    assert top + bottom == 30 and left == right == 0
    x = c.extract(img, 60)
    assert x.shape == (60, 60, 3) and x.dtype == np.float32
    # padding replicates the edge rows
    inside = to_unit_float(img[:, c.x0 : c.x0 + 60])
    np.testing.assert_array_equal(x[top : top + 30], inside)
    for r in range(top):
        np.testing.assert_array_equal(x[r], inside[0])
    for r in range(bottom):
        np.testing.assert_array_equal(x[top + 30 + r], inside[-1])
    # lossless round trip at the box size, padding dropped
    np.testing.assert_array_equal(c.paste_back(img, x), img)
    patch, (px, py) = c.to_photo(x)
    assert (px, py) == (c.x0, 0) and patch.shape == (30, 60, 3) and patch.dtype == np.uint16


def test_photo_smaller_than_square_both_ways():
    img = photo(20, 24, channels=1)
    c = Crop.around((2, 2, 20, 16), img.shape, margin=0.5)
    assert c.side == 40 and c.inside == (0, 0, 24, 20)
    assert c.pad == (10, 10, 8, 8)  # region centred as far as possible
    x = c.extract(img, 64)
    assert x.shape == (64, 64, 1)
    back = c.paste_back(img, x)
    assert back.shape == img.shape and back.dtype == np.uint8
    diff = np.abs(back.astype(int) - img)  # cubic up to 64, area back down to 40: resampling blur only
    assert diff.mean() < 3 and diff.max() < 20


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_round_trip_exact_at_box_size(dtype):
    img = photo(90, 130, dtype=dtype, seed=3)
    c = Crop.around((70, 40, 48, 36), img.shape)
    x = c.extract(img, c.side)
    back = c.paste_back(img, x)
    assert back.dtype == img.dtype
    np.testing.assert_array_equal(back, img)


def test_uint16_round_trip_through_gan_resolution():
    img = photo(400, 500, dtype=np.uint16, seed=4)
    c = Crop.around((100, 120, 150, 130), img.shape)  # side 225
    for size in (64, 256):
        x = c.extract(img, size)
        assert x.shape == (size, size, 3) and x.min() >= 0 and x.max() <= 1
        back = c.paste_back(img, x)
        assert back.dtype == np.uint16
        x0, y0, w, h = c.inside
        diff = np.abs(back.astype(np.int64) - img.astype(np.int64))
        outside = np.ones(img.shape[:2], bool)
        outside[y0 : y0 + h, x0 : x0 + w] = False
        assert diff[outside].max() == 0  # untouched outside the box
        # resampling error only: small on average for this smooth-ish photo (and bounded)
        assert diff.mean() / 65535 < (0.02 if size == 64 else 0.01)
        assert diff.max() / 65535 < 0.35


def test_extract_value_ranges_and_resampling():
    img = photo(200, 200, dtype=np.uint8)
    c = Crop.around((50, 50, 100, 100), img.shape, margin=0)
    small = c.extract(img, 50)  # area averaging: exact 2x2 means
    ref = to_unit_float(img[50:150, 50:150]).reshape(50, 2, 50, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(small, ref, atol=1e-6)
    big = c.extract(img, 256)  # bicubic, clipped to [0, 1]
    assert big.min() >= 0 and big.max() <= 1
    f = photo(200, 200, dtype=np.float64) * 3.0  # float photos keep their values (not clipped)
    xf = c.extract(f, 100)
    assert xf.dtype == np.float32 and xf.max() > 1.0


def test_channels_gray_and_alpha():
    rgba = photo(64, 64, channels=4)
    color, alpha = split_alpha(rgba)
    assert color.shape == (64, 64, 3) and alpha.shape == (64, 64)
    ga = photo(64, 64, channels=2)
    color, alpha = split_alpha(ga)
    assert color.shape == (64, 64, 1) and alpha.shape == (64, 64)
    assert split_alpha(rgba[:, :, :3])[1] is None and split_alpha(rgba[:, :, 0])[1] is None

    c = Crop.around((10, 10, 30, 30), rgba.shape)
    x = c.extract(rgba, 32)
    assert x.shape == (32, 32, 3)  # alpha is not sent to the GAN
    edited = 1.0 - c.extract(rgba, c.side)
    out = c.paste_back(rgba, edited)
    assert np.array_equal(out[:, :, 3], rgba[:, :, 3])  # alpha kept
    x0, y0, w, h = c.inside
    np.testing.assert_array_equal(out[y0 : y0 + h, x0 : x0 + w, :3], 255 - rgba[y0 : y0 + h, x0 : x0 + w, :3])

    gray = rgba[:, :, 0]
    xg = c.extract(gray, 48)
    assert xg.shape == (48, 48, 1)
    assert c.paste_back(gray, c.extract(gray, c.side)).shape == gray.shape
    np.testing.assert_array_equal(c.paste_back(gray, c.extract(gray, c.side)[:, :, 0]), gray)
    g1 = gray[:, :, None]
    np.testing.assert_array_equal(c.paste_back(g1, c.extract(g1, c.side)), g1)
    np.testing.assert_array_equal(c.paste_back(ga, c.extract(ga, c.side)), ga)
    with pytest.raises(CropError, match="channels"):
        c.paste_back(rgba, np.zeros((32, 32, 1), np.float32))


def test_mask_to_crop():
    m = np.zeros((100, 100), np.uint8)
    m[40:60, 30:70] = 255
    c = Crop.for_mask(m)
    assert c.side == 60
    mc = c.mask_to_crop(m, c.side)
    assert mc.dtype == np.float32 and mc.shape == (60, 60)
    x0, y0 = c.x0, c.y0
    np.testing.assert_array_equal(mc, (m[y0 : y0 + 60, x0 : x0 + 60] > 0).astype(np.float32))
    small = c.mask_to_crop(m > 0, 30)
    assert small.shape == (30, 30) and small.min() >= 0 and small.max() <= 1
    assert abs(small.mean() - mc.mean()) < 1e-6  # area averaging keeps the mass
    soft = c.mask_to_crop(np.clip(m / 255 * 1.5, 0, 1.5), 64)  # float masks are clipped to [0, 1]
    assert soft.max() <= 1


def test_unit_float_helpers():
    a = np.array([0, 1, 254, 255], np.uint8)
    np.testing.assert_array_equal(from_unit_float(to_unit_float(a), np.uint8), a)
    b = np.arange(0, 65536, 7, dtype=np.uint16)
    np.testing.assert_array_equal(from_unit_float(to_unit_float(b), np.uint16), b)
    np.testing.assert_array_equal(from_unit_float(np.array([-0.2, 0.5, 1.7]), np.uint8), [0, 128, 255])
    assert from_unit_float(np.array([1.5]), np.float32)[0] == np.float32(1.5)
    with pytest.raises(CropError, match="Unsupported image type"):
        to_unit_float(np.zeros(3, np.int32))


def test_mismatched_photo_and_missing_dtype():
    c = Crop.around((10, 10, 30, 30), (64, 64))
    with pytest.raises(CropError, match="made for a 64x64 image"):
        c.extract(np.zeros((64, 65, 3), np.uint8), 32)
    with pytest.raises(CropError, match="Unknown photo type"):
        c.to_photo(np.zeros((32, 32, 3), np.float32))
    patch, xy = c.to_photo(np.zeros((32, 32, 3), np.float32), np.uint8)
    assert patch.dtype == np.uint8 and patch.shape == (c.side, c.side, 3) and xy == (c.x0, c.y0)

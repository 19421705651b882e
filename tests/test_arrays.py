"""engine/arrays.py: the engine's one place for mask weights, casts to the photo's dtype and the alpha split."""
import numpy as np
import pytest

from engine.arrays import PHOTO_DTYPES, WIRE_DTYPES, cast, mask_weights, split_alpha


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_weights(dtype):
    assert mask_weights(np.array([[0, 51, 255]], np.uint8), dtype)[0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert mask_weights(np.array([[0, 65535]], np.uint16), dtype).tolist() == [[0.0, 1.0]]
    assert mask_weights(np.array([[True, False]]), dtype).tolist() == [[1.0, 0.0]]
    assert mask_weights(np.array([[-0.5, 0.25, 1.5]], np.float64), dtype).tolist() == [[0.0, 0.25, 1.0]]
    assert mask_weights(np.zeros((2, 3), np.uint8), dtype).dtype == dtype


def test_cast_rounds_half_to_even_and_clips_integers_only():
    x = np.array([-3.0, 0.5, 1.5, 2.4, 254.6, 300.0])
    assert cast(x, np.uint8).tolist() == [0, 0, 2, 2, 255, 255]
    assert cast(x * 300, np.uint16).tolist() == [0, 150, 450, 720, 65535, 65535]
    assert cast(x, np.float32).tolist() == x.astype(np.float32).tolist()  # floats are not clipped


def test_split_alpha():
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 7
    color, alpha = split_alpha(rgba)
    assert color.shape == (4, 5, 3) and alpha.shape == (4, 5) and (alpha == 7).all()
    assert split_alpha(rgba[..., :2])[0].shape == (4, 5, 1)
    for no_alpha in (rgba[..., 0], rgba[..., :1], rgba[..., :3]):
        assert split_alpha(no_alpha)[1] is None and split_alpha(no_alpha)[0] is no_alpha


def test_dtype_tables():
    assert set(PHOTO_DTYPES) == {np.uint8, np.uint16, np.float32, np.float64}
    for name, np_dtype in WIRE_DTYPES.items():
        assert np.dtype(np_dtype) == np.dtype(name)

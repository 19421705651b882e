"""Tile geometry (engine/tiles.py): the kept boxes cover the image once, every box is on the latent grid, the
context boxes add the margin inside the image, and a side just above the tile size is cut in equal halves."""
import numpy as np
import pytest

from engine.tiles import balanced_tile, tile_boxes


@pytest.mark.parametrize("h, w, tile, margin, grid", [(384, 384, 128, 32, 8), (1536, 1000, 1024, 32, 8),
                                                      (200, 56, 64, 16, 8), (64, 64, 512, 32, 8)])
def test_kept_boxes_cover_once_on_the_grid(h, w, tile, margin, grid):
    seen = np.zeros((h, w), int)
    for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in tile_boxes(h, w, tile, margin, grid):
        seen[y0:y1, x0:x1] += 1
        assert all(v % grid == 0 for v in (y0, y1, x0, x1, cy0, cy1, cx0, cx1))
        assert (cy0, cy1) == (max(0, y0 - margin), min(h, y1 + margin))
        assert (cx0, cx1) == (max(0, x0 - margin), min(w, x1 + margin))
        assert y1 - y0 <= tile and x1 - x0 <= tile
    assert seen.min() >= 1
    # overlapping kept boxes only where the last tile was moved back to end at the border
    assert (seen > 1).mean() < 0.2


def test_balanced_tiles():
    assert balanced_tile(1536, 1024, 8) == 768
    assert balanced_tile(1000, 512, 8) == 504
    assert balanced_tile(300, 512, 8) == 300
    assert balanced_tile(2048, 512, 8) == 512

"""Tiles over a grid-aligned image: where each tile starts and the context box it is computed in.

Used by tiled and windowed rendering (engine/edit/render.py) and calibration (engine/project/projector.py); pure
geometry, no torch.
"""
from __future__ import annotations


def balanced_tile(n: int, tile: int, grid: int = 1) -> int:
    """The tile side for [0, n): as few tiles as ``tile`` allows, of equal size (a multiple of ``grid``), so a
    side just above ``tile`` is cut in two halves rather than a full tile and a sliver that repeats most of it
    (1536 px with 1024 px tiles: two 768 px tiles, 17 % more pixels with a 32 px margin instead of 80 %)."""
    if n <= tile:
        return n
    k = -(-n // tile)
    return -(-n // (grid * k)) * grid


def tile_starts(n: int, tile: int) -> list[int]:
    """Starts of the tiles covering [0, n) with tiles of ``tile`` (the last one ends at n)."""
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, tile))
    starts.append(n - tile)
    return sorted(set(starts))


Box = tuple[int, int, int, int]


def grow_box(box: Box, margin: int, h: int, w: int) -> Box:
    """The box (y0, y1, x0, x1) grown by ``margin`` on every side and clipped to an h x w image."""
    y0, y1, x0, x1 = box
    return max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)


def check_window(window, h: int, w: int, grid: int, what: str) -> Box:
    """``window`` as a box of ints; ValueError (naming ``what``) unless it is a non-empty box on the grid inside
    the h x w image."""
    y0, y1, x0, x1 = (int(v) for v in window)
    if min(y0, x0) < 0 or y1 > h or x1 > w or y0 >= y1 or x0 >= x1 or any(v % grid for v in (y0, y1, x0, x1)):
        raise ValueError(f"{what} window {tuple(window)} is not a box on the {grid} px grid inside {h}x{w}")
    return y0, y1, x0, x1


def tile_boxes(h: int, w: int, tile: int, margin: int, grid: int = 1) -> list[tuple[Box, Box]]:
    """For an h x w image: ((y0, y1, x0, x1) kept, (Y0, Y1, X0, X1) computed) per tile, the computed box being the
    kept one grown by ``margin`` on every side and clipped to the image.  With ``tile`` and ``margin``
    multiples of a grid and h, w too, every box is aligned to that grid (the last tile of a row or column is
    moved back to end at the border, so it too starts on the grid)."""
    out = []
    th, tw = balanced_tile(h, tile, grid), balanced_tile(w, tile, grid)
    for y in tile_starts(h, th):
        for x in tile_starts(w, tw):
            y1, x1 = min(y + th, h), min(x + tw, w)
            out.append(((y, y1, x, x1), grow_box((y, y1, x, x1), margin, h, w)))
    return out

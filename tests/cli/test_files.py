"""engine/cli/files.py: image files sized before decoding, outputs checked before the work and written
atomically (nothing half-written, nothing left behind)."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from engine.cli.files import (
    CLIError,
    check_depth,
    check_output,
    image_size,
    read_photo,
    write_atomic,
    write_photo,
)


def test_size_comes_from_the_header(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), np.zeros((30, 50, 3), np.uint8))
    assert image_size(str(p)) == (50, 30)
    monkeypatch.setenv("NEURAL_COLLAGE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(CLIError, match=r"50x30 px .*NEURAL_COLLAGE_MAX_IMAGE_PIXELS"):
        read_photo(str(p))
    monkeypatch.setenv("NEURAL_COLLAGE_MAX_IMAGE_PIXELS", "2000")
    assert read_photo(str(p)).shape == (30, 50, 3)


def test_outputs_are_checked_before_the_work(tmp_path):
    with pytest.raises(CLIError, match="it is a folder"):
        check_output(str(tmp_path))
    with pytest.raises(CLIError, match="unknown image type"):
        check_output(str(tmp_path / "o.xyz"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(CLIError, match="is not a folder"):
        check_output(str(tmp_path / "f" / "o.png"))
    with pytest.raises(CLIError, match="does not exist"):
        check_output(str(tmp_path / "missing" / "o.png"))
    assert check_output(str(tmp_path / "o.PNG"))


@pytest.mark.parametrize("ext, dtype, ok", [(".jpg", np.uint16, False), (".png", np.uint16, True),
                                            (".png", np.float32, False), (".tif", np.float32, True),
                                            (".webp", np.uint8, True)])
def test_bit_depth_against_the_extension(ext, dtype, ok):
    if ok:
        check_depth("o" + ext, dtype)
    else:
        with pytest.raises(CLIError, match="would lose precision"):
            check_depth("o" + ext, dtype)


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "o.png"

    def broken(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(CLIError, match="disk full"):
        write_atomic(str(out), broken)
    assert os.listdir(tmp_path) == []
    out.write_bytes(b"old")
    with pytest.raises(CLIError):
        write_atomic(str(out), broken)
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["o.png"]
    write_photo(str(out), np.full((4, 5, 3), 7, np.uint8))
    assert cv2.imread(str(out)).shape == (4, 5, 3) and os.listdir(tmp_path) == ["o.png"]

"""The `neural-collage` CLI on the shipped default model: every command writes an image of the right size,
every bad input exits non-zero with one clear line and writes nothing."""
import numpy as np
import pytest
from PIL import Image

from engine.cli.parser import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def circle_png(path, size=64, r=18):
    yy, xx = np.mgrid[0:size, 0:size]
    m = (((xx - size / 2) ** 2 + (yy - size / 2) ** 2) < r * r).astype(np.uint8) * 255
    Image.fromarray(m).save(path)
    return path


def test_models_lists_default(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("default"))
    assert "present" in line and " 64" in line
    assert "biggan-deep-128" in out


def test_classes_search(capsys):
    code, out, _ = run(capsys, "classes", "--search", "gra")
    assert code == 0
    assert "grass" in out and "gravel" in out and "brick" not in out


def test_generate_writes_image(tmp_path, capsys):
    o = tmp_path / "g.png"
    code, out, _ = run(capsys, "generate", "--class", "brick", "--seed", "3", "-o", o)
    assert code == 0 and Image.open(o).size == (64, 64)
    o2 = tmp_path / "g128.png"
    assert run(capsys, "generate", "--class", "7", "--seed", "3", "--size", "128", "-o", o2)[0] == 0
    assert Image.open(o2).size == (128, 128)


def test_generate_is_deterministic(tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    run(capsys, "generate", "--class", "sand", "--seed", "5", "-o", a)
    run(capsys, "generate", "--class", "sand", "--seed", "5", "-o", b)
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_swap_generated(tmp_path, capsys):
    m = circle_png(tmp_path / "m.png")
    o = tmp_path / "s.png"
    plain = tmp_path / "p.png"
    run(capsys, "generate", "--class", "grass", "--seed", "1", "-o", plain)
    code, _, _ = run(capsys, "swap", "--class", "grass", "--seed", "1", "--mask", m, "--to", "snow", "-o", o)
    assert code == 0
    a, b = np.asarray(Image.open(plain)).astype(int), np.asarray(Image.open(o)).astype(int)
    assert a.shape == b.shape == (64, 64, 3)
    inside = np.abs(a - b)[26:38, 26:38].mean()
    corner = np.abs(a - b)[:8, :8].mean()
    assert inside > 20 and inside > 3 * corner


def test_blend_generated(tmp_path, capsys):
    m = circle_png(tmp_path / "m.png")
    o = tmp_path / "b.png"
    code, _, _ = run(capsys, "blend", "--class", "grass", "--seed", "1", "--ref-seed", "2", "--ref-class", "brick",
                     "--mask", m, "--shift", "8,0", "-o", o)
    assert code == 0 and Image.open(o).size == (64, 64)


@pytest.mark.parametrize("argv, message", [
    (["generate", "--class", "lion", "--seed", "1"], "unknown class 'lion'"),
    (["generate", "--class", "s", "--seed", "1"], "ambiguous class 's'"),
    (["generate", "--class", "99", "--seed", "1"], "unknown class id 99"),
    (["generate", "--model", "biggan-deep-512", "--class", "1", "--seed", "1"], "model biggan-deep-512: missing"),
    (["generate", "--model", "nope", "--class", "1"], "unknown model 'nope'"),
    (["swap", "--class", "grass", "--seed", "1", "--mask", "MASK", "--to", "snow", "--strength", "1.5"],
     "strength must be in [0, 1]"),
    (["swap", "--class", "grass", "--seed", "1", "--mask", "MASK", "--to", "snow", "--layers", "0,9"],
     "unknown layer index 9"),
    (["swap", "--class", "grass", "--seed", "1", "--mask", "missing.png", "--to", "snow"], "cannot read mask"),
    (["swap", "--class", "grass", "--seed", "1", "--mask", "MASK"], "--to"),
    (["project", "--input", "missing.png"], "missing.png: no such file"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, argv, message):
    m = str(circle_png(tmp_path / "m.png"))
    o = tmp_path / "out.png"
    argv = [m if a == "MASK" else (str(tmp_path / a) if a == "missing.png" else a) for a in argv]
    code, _, err = run(capsys, *argv, "-o", o)
    assert code != 0
    lines = [x for x in err.strip().splitlines() if x.startswith("neural-collage: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert not o.exists()


def test_unreadable_mask(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    code, _, err = run(capsys, "swap", "--class", "grass", "--seed", "1", "--mask", bad, "--to", "snow",
                       "-o", tmp_path / "o.png")
    assert code == 2 and "cannot read mask" in err and not (tmp_path / "o.png").exists()


def test_mask_of_other_size_is_resized_with_warning(tmp_path, capsys):
    m = circle_png(tmp_path / "m.png", size=32, r=9)
    o = tmp_path / "o.png"
    code, _, err = run(capsys, "swap", "--class", "grass", "--seed", "1", "--mask", m, "--to", "snow", "-o", o)
    assert code == 0 and "resized to 64x64" in err and Image.open(o).size == (64, 64)


@pytest.mark.parametrize("extra, message", [
    (["--scale", "9"], "bad scale '9': use a number in [0.25, 4]"),
    (["--scale", "big"], "bad scale 'big'"),
    (["--mode", "quick"], "bad mode 'quick': use fast or calibrated"),
    (["--layer-strengths", "1,x,1"], "bad layer strengths '1,x,1'"),
    (["--layer-strengths", "1,2,1"], "each must be in [0, 1], got 2"),
    (["--layer-strengths", "1,1", "--mode", "fast"], "this model has 3 sCBN layers, got 2 values"),
])
def test_bad_scale_mode_layer_strengths_fail_clearly_and_write_nothing(tmp_path, capsys, extra, message):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(photo)
    m = circle_png(tmp_path / "m.png")
    o = tmp_path / "out.png"
    code, _, err = run(capsys, "swap", "--input", photo, "--mask", m, "--to", "gravel", "--class", "grass", *extra,
                       "-o", o)
    assert code == 2
    lines = [x for x in err.strip().splitlines() if x.startswith("neural-collage: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert not o.exists()


def test_photo_swap_fast_mode_and_scale(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)).save(photo)
    m = circle_png(tmp_path / "m.png", size=96, r=30)
    o = tmp_path / "out.png"
    code, out, err = run(capsys, "swap", "--input", photo, "--mask", m, "--to", "gravel", "--class", "grass",
                         "--mode", "fast", "--scale", "2", "--layer-strengths", "1,1,0.5", "-o", o)
    assert code == 0, err
    assert "fast" in out and "rendered at the crop's" in out and "not measured" in out
    assert np.asarray(Image.open(o)).shape == (96, 96, 3)


def test_model_colours_and_precision_options():
    """--model-colours (blend: keep the model's colours), --photo-colours (swap: the photo's colour rendition) and
    --precision (auto, float32, bfloat16) reach the edit; a bad precision is refused by the parser."""
    from engine.cli.parser import build_parser

    ap = build_parser()
    for cmd, flag in (("swap", "photo_colours"), ("blend", "model_colours")):
        args = ap.parse_args([cmd, "-o", "out.png", "--" + flag.replace("_", "-"), "--precision", "float32"])
        assert getattr(args, flag) and args.precision == "float32"
        assert not getattr(ap.parse_args([cmd, "-o", "out.png"]), flag)
    with pytest.raises(SystemExit):
        ap.parse_args(["swap", "-o", "out.png", "--precision", "half"])

"""Device selection and seeding: CUDA when present, else CPU; never hard-coded."""
from __future__ import annotations

import os

import torch


def select_device(preference: str | None = "auto") -> torch.device:
    """Return the device to run on.

    ``preference`` is ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    The environment variable ``NEURAL_COLLAGE_DEVICE`` overrides ``"auto"``.
    """
    pref = (preference or "auto").lower()
    if pref == "auto":
        pref = os.environ.get("NEURAL_COLLAGE_DEVICE", "auto").lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} was asked for, but this PyTorch build sees no CUDA device")
    if pref != "cpu" and not pref.startswith("cuda"):
        raise ValueError(f"unknown device {preference!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(pref)


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator. Random numbers are drawn on the CPU so a seed gives the same latent on every device."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


PRECISIONS = ("auto", "float32", "bfloat16")
PRECISION_HELP = ("precision of the encoder and the calibration steps of full-resolution edits: auto (bfloat16 where "
                  "the device computes it natively, else float32), float32 or bfloat16; rendering is always float32 "
                  "(default %(default)s)")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device that supports it, or a CPU whose flags list
    AVX512-BF16 or AMX-BF16 (x86) or BF16 (arm64), read from /proc/cpuinfo (elsewhere: False).  Without native
    support bf16 is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def work_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The reduced precision for the full-resolution path's encoder and calibration steps: torch.bfloat16 for
    ``precision`` "bfloat16", or "auto" on a device with native bf16 (:func:`native_bf16`); None (float32) for
    "float32" or where bf16 would be emulated.  The environment variable ``NEURAL_COLLAGE_PRECISION`` overrides
    "auto"."""
    pref = (precision or "auto").lower()
    if pref == "auto":
        pref = os.environ.get("NEURAL_COLLAGE_PRECISION", "auto").lower()
    if pref not in PRECISIONS:
        raise ValueError(f"unknown precision {pref!r}: use {', '.join(PRECISIONS)}")
    if pref == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    return torch.bfloat16 if pref == "bfloat16" else None

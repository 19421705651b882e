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

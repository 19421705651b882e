"""The resumable, time-budgeted loop of the second and third training stages (encoder, A/B network): resume
from the stage's checkpoint, run iterations until the stage's total minutes are spent, checkpoint every few
minutes (atomically) and at the end.  A session that is killed loses at most ``checkpoint_every`` seconds."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from engine.train.gan import save_atomic


def resume(ck_path: Path, parts: dict) -> tuple[int, float]:
    """Load ``parts`` (name -> module or optimiser) from ck_path when it exists; returns (iterations, seconds)
    already spent."""
    if not ck_path.exists():
        return 0, 0.0
    ck = torch.load(ck_path, map_location="cpu", weights_only=False)  # our own training checkpoint
    for name, part in parts.items():
        part.load_state_dict(ck[name])
    return int(ck["it"]), float(ck["spent"])


def save(ck_path: Path, parts: dict, it: int, spent: float) -> None:
    save_atomic({**{name: part.state_dict() for name, part in parts.items()}, "it": it, "spent": spent}, ck_path)


def train_for(minutes: float, ck_path: Path, parts: dict, step: Callable[[int], str], it: int = 0,
              spent: float = 0.0, log_every: int = 20, checkpoint_every: float = 180.0,
              log: Callable[[str], None] = lambda s: print(s, flush=True)) -> int:
    """Call ``step(it)`` (one iteration; returns its log text) until ``minutes`` in total (the checkpoint's time
    included) are spent; returns the iteration count."""
    t0, spent0, t_ck = time.time(), spent, time.time()
    while spent < minutes * 60:
        text = step(it)
        it += 1
        spent = spent0 + time.time() - t0
        if it % log_every == 0:
            log(f"it {it} min {spent / 60:.1f} {text}")
        if time.time() - t_ck > checkpoint_every:
            save(ck_path, parts, it, spent)
            t_ck = time.time()
    save(ck_path, parts, it, spent)
    log(f"done: {it} iterations")
    return it


class FollowCheckpoint:
    """Keep ``module`` at the weights of a checkpoint another process is still writing: ``poll()`` reloads
    ``ckpt[key]`` when the file's modification time has changed since the last load (the stages write their
    checkpoints atomically, so a changed file is a complete one).  Used by the A/B stage while the encoder it
    depends on trains alongside."""

    def __init__(self, path: Path, module: torch.nn.Module, key: str):
        self.path, self.module, self.key = Path(path), module, key
        self.seen = None
        self.poll()

    def poll(self) -> bool:
        mtime = self.path.stat().st_mtime_ns
        if mtime == self.seen:
            return False
        self.seen = mtime
        self.module.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=False)[self.key])
        return True

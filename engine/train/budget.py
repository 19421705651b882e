"""The resumable, time-budgeted loop of the second and third training stages (encoder, A/B network): resume
from the stage's checkpoint, run iterations until the stage's total minutes are spent, checkpoint every few
minutes (atomically) and at the end.  A session that is killed loses at most ``checkpoint_every`` seconds."""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import torch

from engine.train.gan import load_checkpoint, save_atomic


def resume(ck_path: Path, parts: dict, optional: tuple[str, ...] = ()) -> tuple[int, float]:
    """Load ``parts`` (name -> module or optimiser) from ck_path when it exists; returns (iterations, seconds)
    already spent.  Parts named in ``optional`` may be missing from an older checkpoint (they keep their state)."""
    if not ck_path.exists():
        return 0, 0.0
    ck = load_checkpoint(ck_path)
    for name, part in parts.items():
        if name in ck or name not in optional:
            part.load_state_dict(ck[name])
    return int(ck["it"]), float(ck["spent"])


def save(ck_path: Path, parts: dict, it: int, spent: float) -> None:
    save_atomic({**{name: part.state_dict() for name, part in parts.items()}, "it": it, "spent": spent}, ck_path)


def train_for(minutes: float, ck_path: Path, parts: dict, step: Callable[[int], str], it: int = 0,
              spent: float = 0.0, log_every: int = 20, checkpoint_every: float = 180.0,
              log: Callable[[str], None] = lambda s: print(s, flush=True),
              on_checkpoint: Callable[[int, float], None] | None = None) -> int:
    """Call ``step(it)`` (one iteration; returns its log text) until ``minutes`` in total (the checkpoint's time
    included) are spent; returns the iteration count.  A budget that is already spent leaves the checkpoint as it
    is (a later stage's parts, e.g. a weight average, stay in it).  ``on_checkpoint(it, spent)`` runs after each
    save (e.g. a sample grid)."""
    if spent >= minutes * 60:
        log(f"done already: {it} iterations, {spent / 60:.1f} of {minutes:g} min spent")
        return it
    t0, spent0, t_ck = time.time(), spent, time.time()
    while spent < minutes * 60:
        text = step(it)
        it += 1
        spent = spent0 + time.time() - t0
        if it % log_every == 0:
            log(f"it {it} min {spent / 60:.1f} {text}")
        if time.time() - t_ck > checkpoint_every:
            save(ck_path, parts, it, spent)
            if on_checkpoint is not None:
                on_checkpoint(it, spent)
            t_ck = time.time()
    save(ck_path, parts, it, spent)
    if on_checkpoint is not None:
        on_checkpoint(it, spent)
    log(f"done: {it} iterations")
    return it


class WeightAverage:
    """Exponential moving average of a module's weights (float parameters and buffers): the late iterates of a
    small-batch Adam run wander, and their average generalises better than any one of them.  A checkpoint part
    (state_dict / load_state_dict) whose ``module`` is what gets exported."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for avg, cur in zip(self.module.state_dict().values(), module.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.mul_(self.decay).add_(cur.detach(), alpha=1.0 - self.decay)
            else:
                avg.copy_(cur)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)


def average_name(name: str) -> str:
    """The checkpoint key of the weight average kept for part ``name``."""
    return f"{name}_ema"


def trained_weights(ck: dict, name: str) -> dict:
    """The weights a stage's checkpoint ships for part ``name``: its average when training kept one."""
    return ck.get(average_name(name), ck[name])


def set_step_size(ck_path: Path, parts: dict, name: str, opt: torch.optim.Optimizer, lr: float,
                  ema: float) -> WeightAverage | None:
    """After ``resume``: use step size ``lr`` (not the checkpoint's) and, when ``ema`` > 0, keep a weight average
    of ``parts[name]`` with that decay as a further part, resumed from the checkpoint when it has one and
    otherwise starting at the resumed weights."""
    for group in opt.param_groups:
        group["lr"] = lr
    if not ema:
        return None
    key = average_name(name)
    avg = parts[key] = WeightAverage(parts[name], ema)
    resume(ck_path, {key: avg}, optional=(key,))
    return avg


class FollowCheckpoint:
    """Keep ``module`` at the weights of a checkpoint another process is still writing: ``poll()`` reloads
    part ``name`` (its average when the file has one, see :func:`trained_weights`) when the file's modification
    time has changed since the last load (the stages write their checkpoints atomically, so a changed file is a
    complete one).  Used by the A/B stage while the encoder it depends on trains alongside."""

    def __init__(self, path: Path, module: torch.nn.Module, name: str):
        self.path, self.module, self.name = Path(path), module, name
        self.seen = None
        self.poll()

    def poll(self) -> bool:
        mtime = self.path.stat().st_mtime_ns
        if mtime == self.seen:
            return False
        self.seen = mtime
        ck = load_checkpoint(self.path)
        self.module.load_state_dict(trained_weights(ck, self.name))
        return True

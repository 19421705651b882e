"""The default model's whole training pipeline, one entry point for a GPU and for the CPU (App. B.2 order):

    python -m engine.train.pipeline --device cuda|cpu --minutes N --out DIR [--data PACK] [--preset P] [--init W]

1. G + D: SNGAN ResNet generator with categorical CBN and a spatial latent, projection discriminator with
   spectral norm, hinge loss, Adam(2e-4, 0.0, 0.9), a moving average of G (what ships), multi-scale crops;
2. the encoder E with eq. 4 (+ 0.2 x MSE) on real and generated crops, its weights averaged;
3. the A/B network with eq. 6 (inner AdaGrad steps of eq. 5), its weights averaged;
4. the judge: a small texture classifier on the real training crops (it only measures).
Then the shipped files are exported into DIR/export (fp16 safetensors + config.json, ``load_default`` reads
them).

``--minutes`` is the TOTAL wall time of all four stages (shares STAGE_SHARES), counted across resumes: a second
call with the same DIR resumes each stage from its checkpoint and only runs what is left; a larger N later
trains on (the GAN first, then the later stages adapt to it).  Every stage checkpoints into DIR at least once a
minute (atomically, loadable with ``torch.load(weights_only=True)``: tensors, numbers and strings; the
configuration is a JSON string), so a run cut at any point leaves usable weights: ``--export-only`` exports
whatever stages have run.

On CUDA: bf16 autocast, channels_last, the whole dataset on the GPU and cropped there (engine/train/
device_crops.py); every log line prints iterations per second.  ``--preset`` picks the architecture (``cpu``:
small enough for 2 CPU cores, the shape of v1 so ``--init`` can start from its weights; ``gpu``: wider;
``tiny``: tests).  ``--init W`` starts G, D, E and A/B from a shipped weights folder (classes matched by name;
a new class starts at the mean of the old ones' embeddings).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.models.auxab import AuxAB
from engine.models.sngan import ResNetGenerator, SNGANConfig, SNResNetProjectionDiscriminator, SpatialEncoder
from engine.project.projector import feature_psi, manifold_projection_loss
from engine.train.budget import WeightAverage, resume
from engine.train.encoder import recalibrate_batchnorm
from engine.train.gan import d_hinge_loss, ema_update, load_checkpoint
from engine.train.spectral import SpectralTarget
from engine.train.budget import train_for as _train_for
from engine.models.texture_classifier import TextureClassifier

STAGES = ("gan", "encoder", "aux", "judge")
STAGE_SHARES = {"gan": 0.66, "encoder": 0.12, "aux": 0.12, "judge": 0.10}
DEFAULT_PACK = "/work/data/textures-v2/textures-v2.pack"

PRESETS = {
    # v1's shapes (so v1's weights can start it) with v2's reflect padding and bilinear up-sampling
    "cpu": {"sngan": {"ch": 32, "gen_mults": [4, 4, 2, 1], "dis_mults": [1, 2, 4, 4], "z_channels": 16},
            "aux": {"dim_a": 128, "dim_zeta": 512, "dim_b": 128}, "judge_ch": 32,
            "crops": [[48, 16], [64, 12], [96, 6], [128, 4]], "enc_batch": 8, "enc_size": 64,
            "aux_batch": 4, "aux_size": 64, "judge_batch": 32},
    # wider generator and a deeper discriminator for 128 px crops; fp16 export ~13 MB
    "gpu": {"sngan": {"ch": 40, "gen_mults": [8, 4, 2, 1], "dis_mults": [1, 2, 4, 8, 8], "z_channels": 32},
            "aux": {"dim_a": 256, "dim_zeta": 1024, "dim_b": 256}, "judge_ch": 32,
            "crops": [[128, 64], [96, 96], [64, 128]], "enc_batch": 64, "enc_size": 128,
            "aux_batch": 32, "aux_size": 128, "judge_batch": 128},
    "tiny": {"sngan": {"ch": 4, "gen_mults": [2, 2, 1, 1], "dis_mults": [1, 2, 2], "z_channels": 4},
             "aux": {"dim_a": 8, "dim_zeta": 16, "dim_b": 8}, "judge_ch": 4,
             "crops": [[32, 4], [48, 2]], "enc_batch": 2, "enc_size": 32, "aux_batch": 2, "aux_size": 32,
             "judge_batch": 8},
}


def make_config(preset: dict, classes: list[str]) -> SNGANConfig:
    s = preset["sngan"]
    return SNGANConfig(ch=s["ch"], dim_z=0, bottom_width=8, n_classes=len(classes), resolution=64,
                       gen_mults=tuple(s["gen_mults"]), dis_mults=tuple(s["dis_mults"]), latent="spatial",
                       z_channels=s["z_channels"], class_names=list(classes), padding="reflect",
                       upsample="bilinear")


class JsonPart:
    """A checkpoint part holding JSON (kept as a string, so torch.load(weights_only=True) reads it)."""

    def __init__(self, value=None):
        self.value = value

    def state_dict(self) -> dict:
        return {"json": json.dumps(self.value)}

    def load_state_dict(self, state: dict) -> None:
        self.value = json.loads(state["json"])


class HalfMomentsAdam(torch.optim.Adam):
    """Adam whose checkpointed moments are bf16 (half the file; load_state_dict casts them back to fp32)."""

    def state_dict(self):
        sd = super().state_dict()
        sd["state"] = {k: {n: (v.to(torch.bfloat16) if torch.is_tensor(v) and v.dim() > 0 else v)
                           for n, v in st.items()} for k, st in sd["state"].items()}
        return sd


# -- data ------------------------------------------------------------------------------------------------------
def load_data(path: str):
    """(class names, train items, held-out items) from a v2 pack file, or from v1's assembled folder."""
    from engine.train import data as d

    p = Path(path)
    if p.is_file():
        pt = d.load_packed(str(p))
        return list(pt.classes), pt.train, pt.held_out
    man = json.loads((p / "manifest.json").read_text())
    names = man["class_names"]
    train, held = [], []
    with np.load(p / "textures.npz") as z:
        for c in man["classes"]:
            k = names.index(c["name"])
            for e in c["sources"]:
                train.append((z[f"train/{c['name']}/{e['index']}"], k))
                held.append((z[f"heldout/{c['name']}/{e['index']}"], k))
    return names, train, held


# -- warm start ------------------------------------------------------------------------------------------------
def _class_rows(old: torch.Tensor, old_names: list[str], new_names: list[str]) -> torch.Tensor:
    mean = old.mean(0)
    rows = [old[old_names.index(n)] if n in old_names else mean for n in new_names]
    return torch.stack(rows)


def warm_start(module: torch.nn.Module, state: dict, old_names: list[str], new_names: list[str],
               class_keys: tuple[str, ...]) -> list[str]:
    """Load the tensors of ``state`` whose shapes fit; per-class tables (keys ending in ``class_keys``) are
    matched by class name.  Returns the keys left at their fresh values."""
    own = module.state_dict()
    skipped = []
    for k, v in own.items():
        if k not in state:
            skipped.append(k)
            continue
        src = state[k].float()
        if k.endswith(class_keys) and src.dim() == 2 and src.shape[1] == v.shape[1]:
            own[k] = _class_rows(src, old_names, new_names).to(v.dtype)
        elif src.shape == v.shape:
            own[k] = src.to(v.dtype)
        else:
            skipped.append(k)
    module.load_state_dict(own)
    return skipped


def load_init(init_dir: Path) -> tuple[dict, list[str]]:
    from safetensors.torch import load_file

    meta = json.loads((init_dir / "config.json").read_text())
    states = {}
    for name in ("generator", "discriminator", "encoder", "aux"):
        f = init_dir / f"{name}.safetensors"
        if f.is_file():
            states[name] = load_file(str(f))
    return states, list(meta["sngan"]["class_names"])


# -- helpers ---------------------------------------------------------------------------------------------------
def save_grid(G: ResNetGenerator, path: Path, n_classes: int, size: int = 64, per_class: int = 4, seed: int = 0):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    was = G.training
    G.eval()
    with torch.no_grad():
        y = torch.arange(n_classes).repeat_interleave(per_class).to(G.device)
        x = G(G.sample_latent(len(y), generator=g, resolution=size), y).float()
    G.train(was)
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    rows = [np.concatenate(list(x[i * per_class:(i + 1) * per_class]), axis=1) for i in range(n_classes)]
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(np.concatenate(rows, axis=0)).save(tmp)
    os.replace(tmp, path)


def train_for(minutes, ck_path, parts, step, it, spent, log, **kw) -> int:
    """budget.train_for, then one line with this call's iterations per second (also for runs too short for a
    regular log line: gpu_run.sh --smoke)."""
    t0, it0 = time.time(), it
    n = _train_for(minutes, ck_path, parts, step, it, spent, log=log, **kw)
    dt = time.time() - t0
    log(f"{n - it0} iterations in {dt:.1f}s of this call: {(n - it0) / max(dt, 1e-9):.2f} it/s")
    return n


class Throughput:
    def __init__(self):
        self.t, self.n = time.time(), 0

    def tick(self, n_img: int) -> None:
        self.n += n_img

    def text(self, its: int) -> str:
        dt = max(time.time() - self.t, 1e-9)
        s = f"{its / dt:.2f} it/s {self.n / dt:.0f} img/s"
        self.t, self.n = time.time(), 0
        return s


# -- the run ---------------------------------------------------------------------------------------------------
class Run:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.amp = self.cuda or args.amp  # bf16 autocast + channels_last (--amp: the CUDA path on the CPU, tests)
        self.log_file = open(self.out / "log.txt", "a")  # noqa: SIM115 - open for the whole run
        meta_file = self.out / "run.json"
        if meta_file.exists():  # a resume keeps the run's architecture and data classes
            self.meta = json.loads(meta_file.read_text())
        else:
            self.meta = None
        t0 = time.time()
        self.classes, train, held = load_data(args.data)
        if self.meta is None:
            preset = copy.deepcopy(PRESETS[args.preset])
            self.meta = {"preset": args.preset, "settings": preset, "classes": self.classes, "data": str(args.data),
                         "init": str(args.init) if args.init else None}
            tmp = meta_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.meta, indent=1))
            os.replace(tmp, meta_file)
        elif self.meta["classes"] != self.classes:
            raise SystemExit(f"{args.data} has classes {self.classes}, but the run in {self.out} was started with "
                             f"{self.meta['classes']}: use a new --out folder")
        self.settings = self.meta["settings"]
        self.cfg = make_config(self.settings, self.classes)
        self.max_crop = max([s for s, _ in self.settings["crops"]] + [self.settings["enc_size"],
                                                                      self.settings["aux_size"]])
        self.train = DeviceCropsLazy(train, len(self.classes), self.device, self.max_crop)
        self.held = held
        self.log(f"data {args.data}: {len(self.classes)} classes, {len(train)} train / {len(held)} held-out images "
                 f"(loaded in {time.time() - t0:.1f}s); device {self.device_name()}; preset {self.meta['preset']}")
        self.init_states, self.init_names = (load_init(Path(self.meta["init"])) if self.meta.get("init")
                                             else ({}, []))

    def device_name(self) -> str:
        if self.cuda:
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return f"cpu ({torch.get_num_threads()} threads)"

    def log(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def budget(self, stage: str) -> float:
        return self.args.minutes * STAGE_SHARES[stage]

    def resume_stage(self, stage: str, parts: dict) -> tuple[int, float] | None:
        """(iteration, seconds spent) of ``stage`` restored into ``parts`` from DIR/<stage>.pt, or None (logged)
        when its budget is spent already."""
        it, spent = resume(self.out / f"{stage}.pt", parts)
        if spent >= self.budget(stage) * 60:
            self.log(f"{stage}: done already ({it} iterations, {spent / 60:.1f} min)")
            return None
        return it, spent

    def run_stage(self, stage: str, parts: dict, step, it: int, spent: float, announce: bool = False, **kw) -> None:
        """train_for ``stage`` to its budget: ``step(i)`` per iteration, checkpoints into DIR/<stage>.pt."""
        a = self.args
        if announce:
            where = f"resumed at {it}" if it else "from the start"
            self.log(f"{stage}: {where}; budget {self.budget(stage):.1f} min")
        train_for(self.budget(stage), self.out / f"{stage}.pt", parts, step, it, spent, log_every=a.log_every,
                  checkpoint_every=a.ckpt_seconds, log=lambda s: self.log(f"{stage}: " + s), **kw)

    def prep(self, m: torch.nn.Module) -> torch.nn.Module:
        m = m.to(self.device)
        if self.amp:
            m = m.to(memory_format=torch.channels_last)
        return m

    def sample(self, batch: int, size: int, g: torch.Generator, labels=None):
        x, y = self.train.get().sample(batch, size, g, labels)
        if self.amp:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    # -- stage 1 ---------------------------------------------------------------------------------------------
    def gan_modules(self):
        return ResNetGenerator(self.cfg), SNResNetProjectionDiscriminator(self.cfg)

    def stage_gan(self) -> bool:
        a = self.args
        G, D = self.gan_modules()
        ck_path = self.out / "gan.pt"
        if not ck_path.exists() and self.init_states:
            g_skip = warm_start(G, self.init_states.get("generator", {}), self.init_names, self.classes,
                                ("gammas.weight", "betas.weight"))
            d_skip = warm_start(D, self.init_states.get("discriminator", {}), self.init_names, self.classes,
                                ("l_y.weight",))
            self.log(f"gan: started from {self.meta['init']} (fresh: G {len(g_skip)} tensors, D {len(d_skip)})")
        G, D = self.prep(G), self.prep(D)
        G_ema = copy.deepcopy(G)
        opt_g = HalfMomentsAdam(G.parameters(), a.lr, betas=(0.0, 0.9))
        opt_d = HalfMomentsAdam(D.parameters(), a.lr, betas=(0.0, 0.9))
        parts = {"G": G, "D": D, "G_ema": G_ema, "opt_g": opt_g, "opt_d": opt_d, "config": JsonPart(self.cfg.to_dict())}
        budget = self.budget("gan")
        done = self.resume_stage("gan", parts)
        if done is None:
            return False
        it, spent = done
        self.log(f"gan: {'resumed at iteration %d, %.1f min' % (it, spent / 60) if it else 'from the start'}; "
                 f"budget {budget:.1f} min; G {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M, "
                 f"D {sum(p.numel() for p in D.parameters()) / 1e6:.2f} M parameters")
        g = torch.Generator().manual_seed(a.seed * 7919 + it)
        crops = self.settings["crops"]
        K = self.cfg.n_classes
        tp = Throughput()
        G.train(), D.train(), G_ema.train()
        spec = None
        if a.spectral > 0:
            t0 = time.time()
            spec = SpectralTarget(self.sample, K, [s for s, _ in crops], present=self.train.get().present,
                                  max_period=a.spectral_period)
            self.log(f"gan: spectral term x{a.spectral} at periods < {a.spectral_period:g} px (real spectra of "
                     f"{len(crops)} crop sizes measured in {time.time() - t0:.1f}s)")

        def step(i: int) -> str:
            size, batch = crops[i % len(crops)]
            for _ in range(a.n_dis):
                x, y = self.sample(batch, size, g)
                z = G.sample_latent(batch, generator=g, resolution=size)
                yf = torch.randint(0, K, (batch,), generator=g).to(self.device)
                with self.autocast():
                    with torch.no_grad():
                        fake = G(z, yf)
                    loss_d = d_hinge_loss(D, x, y, fake, yf)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
            z = G.sample_latent(batch, generator=g, resolution=size)
            yf = torch.randint(0, K, (batch,), generator=g).to(self.device)
            with self.autocast():
                fake = G(z, yf)
                loss_g = -D(fake, yf).mean()
            loss_s = spec.loss(fake, yf) if spec is not None else None
            if loss_s is not None:
                loss_g = loss_g + a.spectral * loss_s
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            ema_update(G_ema, G, min(a.ema, (1.0 + i) / (10.0 + i)))  # short runs: a shorter average
            tp.tick(batch * (a.n_dis + 1))
            if (i + 1) % a.log_every == 0:
                extra = f" spectral {loss_s.item():.3f}" if loss_s is not None else ""
                return f"loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f}{extra} {tp.text(a.log_every)}"
            return ""

        def on_ck(i: int, s: float) -> None:
            save_grid(G_ema, self.out / "samples.png", K)
            G_ema.train()

        self.run_stage("gan", parts, step, it, spent, on_checkpoint=on_ck)
        return True

    def load_generator(self) -> tuple[ResNetGenerator, SNResNetProjectionDiscriminator, int]:
        """G (its moving average, batch norm recalibrated once per GAN checkpoint) and D, frozen, on the device."""
        G, D, it = calibrated_gan(self.out, self.device, log=self.log)
        G, D = self.prep(G).eval(), self.prep(D).eval()
        for p in list(G.parameters()) + list(D.parameters()):
            p.requires_grad_(False)
        return G, D, it

    # -- stage 2 ---------------------------------------------------------------------------------------------
    def stage_encoder(self) -> bool:
        a = self.args
        budget = self.budget("encoder")
        ck_path = self.out / "encoder.pt"
        E = SpatialEncoder(self.cfg)
        if not ck_path.exists() and "encoder" in self.init_states:
            warm_start(E, self.init_states["encoder"], self.init_names, self.classes, ())
        E = self.prep(E)
        opt = HalfMomentsAdam(E.parameters(), a.enc_lr, betas=(0.5, 0.999))
        avg = WeightAverage(E, 0.99)
        parts = {"E": E, "opt": opt, "E_ema": avg}
        done = self.resume_stage("encoder", parts)
        if done is None:
            return False
        it, spent = done
        G, D, _ = self.load_generator()
        bs, size = self.settings["enc_batch"], self.settings["enc_size"]
        g = torch.Generator().manual_seed(a.seed * 7919 + 1 + it)
        tp = Throughput()
        E.train()
        t_start, spent0 = time.time(), spent

        def loss_fn(x, y):
            with self.autocast():
                gen = G(E(x), y)
                loss = manifold_projection_loss(feature_psi(D, gen), feature_psi(D, x)).mean()
            return loss + 0.2 * (gen.float() - x.float()).pow(2).mean()

        def step(i: int) -> str:
            late = spent0 + time.time() - t_start > 0.7 * budget * 60
            for grp in opt.param_groups:  # the first 70 % at the larger step, then smaller (v1's recipe)
                grp["lr"] = a.enc_lr * (0.4 if late else 1.0)
            x, y = self.sample(bs, size, g)
            loss_real = loss_fn(x, y)
            yf = torch.randint(0, self.cfg.n_classes, (bs,), generator=g).to(self.device)
            with torch.no_grad(), self.autocast():
                xf = G(G.sample_latent(bs, generator=g, resolution=size), yf).float()
            loss_fake = loss_fn(xf, yf)
            opt.zero_grad(set_to_none=True)
            (loss_real + loss_fake).backward()
            opt.step()
            avg.update(E)
            tp.tick(2 * bs)
            if (i + 1) % a.log_every == 0:
                return f"real {loss_real.item():.4f} fake {loss_fake.item():.4f} {tp.text(a.log_every)}"
            return ""

        self.run_stage("encoder", parts, step, it, spent, announce=True)
        return True

    # -- stage 3 ---------------------------------------------------------------------------------------------
    def stage_aux(self) -> bool:
        from engine.train.auxab import auxiliary_network_loss

        a = self.args
        ck_path = self.out / "aux.pt"
        aux = AuxAB(self.cfg.z_channels, **self.settings["aux"])
        fresh = not ck_path.exists()
        if fresh and "aux" in self.init_states:
            skipped = warm_start(aux, self.init_states["aux"], self.init_names, self.classes, ())
            fresh = bool(skipped)
        aux = self.prep(aux)
        opt = HalfMomentsAdam(aux.parameters(), a.aux_lr, weight_decay=1e-4)
        avg = WeightAverage(aux, 0.99)
        parts = {"aux": aux, "opt": opt, "aux_ema": avg}
        done = self.resume_stage("aux", parts)
        if done is None:
            return False
        it, spent = done
        G, D, _ = self.load_generator()
        E = SpatialEncoder(self.cfg)
        E.load_state_dict(load_checkpoint(self.out / "encoder.pt")["E_ema"])
        E = self.prep(E).eval()
        for p in E.parameters():
            p.requires_grad_(False)
        if fresh and it == 0:  # B(A(z)) ~ z before the meta-learning loss
            warm = torch.optim.Adam(aux.parameters(), 1e-3)
            for _ in range(300 if self.meta["preset"] != "tiny" else 20):
                z = torch.randn(256, self.cfg.z_channels, device=self.device)
                loss = (aux.B(aux.A(z)) - z).pow(2).mean()
                warm.zero_grad()
                loss.backward()
                warm.step()
            avg.load_state_dict(aux.state_dict())
            self.log(f"aux: warm start, reconstruction {loss.item():.5f}")
        bs, size = self.settings["aux_batch"], self.settings["aux_size"]
        g = torch.Generator().manual_seed(a.seed * 7919 + 2 + it)
        tp = Throughput()

        def step(i: int) -> str:
            x, y = self.sample(bs, size, g)
            with torch.no_grad():
                z0 = E(x)
            z_rand = G.sample_latent(bs, generator=g, resolution=size)
            loss, rounds = auxiliary_network_loss(G, D, aux, x, y, z0, z_rand)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(aux.parameters(), 100.0)
            opt.step()
            avg.update(aux)
            tp.tick(bs)
            if (i + 1) % a.log_every == 0:
                return f"L_AB {loss.item():.4f} rounds {[round(r, 4) for r in rounds]} {tp.text(a.log_every)}"
            return ""

        self.run_stage("aux", parts, step, it, spent, announce=True)
        return True

    # -- stage 4 ---------------------------------------------------------------------------------------------
    def stage_judge(self) -> bool:
        a = self.args
        clf = self.prep(TextureClassifier(self.cfg.n_classes, ch=self.settings["judge_ch"]))
        opt = HalfMomentsAdam(clf.parameters(), 1e-3)
        parts = {"clf": clf, "opt": opt}
        done = self.resume_stage("judge", parts)
        if done is None:
            return False
        it, spent = done
        bs = self.settings["judge_batch"]
        sizes = [s for s in (32, 48, 64, 96, 128) if s <= self.max_crop]
        g = torch.Generator().manual_seed(a.seed * 7919 + 3 + it)
        clf.train()

        def step(i: int) -> str:
            size = sizes[i % len(sizes)]
            x, y = self.sample(bs, size, g)
            # a little colour jitter, so the judge does not key on exact tints only
            jit = torch.randn(bs, 4, generator=g).to(self.device)
            x = (x * (1 + 0.1 * jit[:, :1, None, None]) + 0.05 * jit[:, 1:, None, None]).clamp(-1, 1)
            with self.autocast():
                loss = F.cross_entropy(clf(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return f"loss {loss.item():.3f}" if (i + 1) % a.log_every == 0 else ""

        self.run_stage("judge", parts, step, it, spent, announce=True)
        acc = judge_accuracy(clf.eval(), self.held, self.cfg.n_classes, self.device)
        if acc is not None:
            self.log(f"judge: held-out accuracy {acc['mean']:.3f} per class "
                     f"{ {self.classes[k]: round(v, 3) for k, v in acc['per_class'].items()} }")
        return True

    # -- export ----------------------------------------------------------------------------------------------
    def export(self) -> Path | None:
        return export_run(self.out, self.args.export_dir, log=self.log)


class DeviceCropsLazy:
    """The training crops are put on the device the first time a stage needs them (an export-only call or a
    run whose stages are all done never pays for it)."""

    def __init__(self, items, n_classes, device, max_crop):
        self.args = (items, n_classes, device, max_crop)
        self._crops = None

    def get(self):
        if self._crops is None:
            from engine.train.device_crops import DeviceCrops

            self._crops = DeviceCrops(*self.args)
        return self._crops


@torch.no_grad()
def judge_accuracy(clf, held, n_classes: int, device, size: int = 64, per_class: int = 64, seed: int = 1):
    """Accuracy on seeded crops of the held-out images (None when there are none)."""
    if not held:
        return None
    from engine.train.device_crops import DeviceCrops

    crops = DeviceCrops(held, n_classes, device, max_crop=size)
    g = torch.Generator().manual_seed(seed)
    per = {}
    for k in crops.present:
        x, y = crops.sample(per_class, size, g, labels=torch.full((per_class,), k))
        per[k] = float((clf(x).argmax(1) == y).float().mean())
    return {"mean": float(np.mean(list(per.values()))), "per_class": per}


def calibrated_gan(out: Path, device="cpu", log=print):
    """(G, D, GAN iterations) of the run in ``out``: G is the moving average with its batch-norm statistics
    recalibrated (standing statistics), cached in G_calibrated.pt per GAN checkpoint."""
    out = Path(out)
    meta = json.loads((out / "run.json").read_text())
    settings = meta["settings"]
    ck = load_checkpoint(out / "gan.pt")
    cfg = SNGANConfig.from_dict(json.loads(ck["config"]["json"]))
    G, D = ResNetGenerator(cfg), SNResNetProjectionDiscriminator(cfg)
    G.load_state_dict(ck["G_ema"])
    D.load_state_dict(ck["D"])
    it = int(ck["it"])
    cal = out / "G_calibrated.pt"
    if cal.exists():
        c = load_checkpoint(cal)
        if int(c["gan_it"]) == it:
            G.load_state_dict(c["G"])
            return G.to(device).eval(), D.to(device).eval(), it
    t0 = time.time()
    G.to(device)
    batches = {"tiny": 8, "cpu": 40}.get(meta["preset"], 100)
    recalibrate_batchnorm(G, batches=batches, batch=settings["enc_batch"] * 2, size=settings["enc_size"])
    tmp = out / "G_calibrated.pt.tmp"
    torch.save({"G": G.state_dict(), "gan_it": torch.tensor(it)}, tmp)
    os.replace(tmp, cal)
    log(f"batch-norm statistics of G recalibrated at GAN iteration {it} ({time.time() - t0:.0f}s)")
    return G.eval(), D.to(device).eval(), it


def export_run(out: Path, export_dir: str | None = None, log=print, dtype=torch.float16) -> Path | None:
    """Write the shipped files (generator, discriminator, encoder, aux, classifier .safetensors in fp16 and
    config.json with the training record) from whatever stages of the run in ``out`` have checkpoints."""
    from safetensors.torch import save_file

    out = Path(out)
    if not (out / "gan.pt").exists():
        log("export: no GAN checkpoint yet")
        return None
    meta = json.loads((out / "run.json").read_text())
    dest = Path(export_dir) if export_dir else out / "export"
    dest.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(out / "gan.pt")
    cfg = SNGANConfig.from_dict(json.loads(ck["config"]["json"]))
    G, D, _ = calibrated_gan(out, "cpu", log=log)
    states = {"generator": G.state_dict(), "discriminator": D.state_dict()}
    training = {"gan_iterations": int(ck["it"]), "gan_minutes": round(float(ck["spent"]) / 60, 1)}
    for stage, f, key in (("encoder", "encoder.pt", "E_ema"), ("aux", "aux.pt", "aux_ema"),
                          ("judge", "judge.pt", "clf")):
        if (out / f).exists():
            sck = load_checkpoint(out / f)
            states["classifier" if stage == "judge" else stage] = sck[key]
            training.update({f"{stage}_iterations": int(sck["it"]),
                             f"{stage}_minutes": round(float(sck["spent"]) / 60, 1)})
    for name, sd in states.items():
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
        tmp = dest / f"{name}.safetensors.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, dest / f"{name}.safetensors")
    for name in ("encoder", "aux", "classifier"):
        if name not in states and (dest / f"{name}.safetensors").exists():
            (dest / f"{name}.safetensors").unlink()  # an older export's file would not match this generator
    config = {"sngan": cfg.to_dict(), "aux": meta["settings"]["aux"],
              "classifier": {"ch": meta["settings"]["judge_ch"]}, "training": training,
              "pipeline": {"preset": meta["preset"], "data": meta["data"], "init": meta.get("init")}}
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    total = sum(f.stat().st_size for f in dest.glob("*.safetensors"))
    log(f"export: {', '.join(states)} -> {dest} ({total / 1e6:.1f} MB); {training}")
    return dest


def compact(out: Path, log=print) -> None:
    """Shrink the checkpoints in ``out`` for carrying (gpu_run.sh): drop optimiser moments and store the raw
    (non-averaged) weights in bf16.  A resume from a compacted run restarts Adam's moments."""
    for f in ("gan.pt", "encoder.pt", "aux.pt", "judge.pt"):
        p = Path(out) / f
        if not p.exists():
            continue
        ck = load_checkpoint(p)
        for k in list(ck):
            if k.startswith("opt"):
                del ck[k]
            elif k in ("G", "D", "E", "aux") and f != "judge.pt":
                ck[k] = {n: (v.to(torch.bfloat16) if v.is_floating_point() else v) for n, v in ck[k].items()}
        tmp = p.with_suffix(".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, p)
        log(f"compact: {f} {p.stat().st_size / 2**20:.1f} MiB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--minutes", type=float, required=True, help="total wall time of all stages (across resumes)")
    ap.add_argument("--out", required=True, help="run folder: checkpoints, log.txt, samples.png, export/")
    ap.add_argument("--data", default=None, help=f"v2 pack file or v1 folder (default {DEFAULT_PACK}, else "
                    ".cache/textures)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="architecture and batch sizes (default: gpu on cuda, cpu otherwise; a resume keeps the "
                         "run's own)")
    ap.add_argument("--init", default=None, help="start G, D, E, A/B from this shipped weights folder")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    ap.add_argument("--export-only", action="store_true", help="only export what the run has")
    ap.add_argument("--export-dir", default=None, help="default OUT/export")
    ap.add_argument("--compact", action="store_true", help="after exporting, shrink the checkpoints (gpu_run.sh)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast and channels_last also on the CPU (the CUDA "
                    "path, for tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--n-dis", type=int, default=1)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--spectral", type=float, default=0.0, help="weight of the spectral term on G (engine/train/"
                    "spectral.py: its short-period power spectrum follows the real crops'; 0: off)")
    ap.add_argument("--spectral-period", type=float, default=32.0,
                    help="the spectral term looks at periods under this many px (default 32: the 8 px latent cell "
                         "and below; at 8 the v2s run moved its pattern to 8-16 px)")
    ap.add_argument("--enc-lr", type=float, default=5e-4)
    ap.add_argument("--aux-lr", type=float, default=1e-4)
    ap.add_argument("--ckpt-seconds", type=float, default=50.0, help="checkpoint interval (<= 60)")
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch here (use --device cpu)")
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(args.threads)
    if args.data is None:
        args.data = DEFAULT_PACK if os.path.isfile(DEFAULT_PACK) else ".cache/textures"
    if args.preset is None:
        args.preset = "gpu" if args.device.startswith("cuda") else "cpu"
    if args.export_only:
        export_run(Path(args.out), args.export_dir)
        if args.compact:
            compact(Path(args.out))
        return 0
    torch.manual_seed(args.seed)
    run = Run(args)
    t0 = time.time()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise SystemExit(f"unknown stage {bad[0]!r}: use {', '.join(STAGES)}")
    trained = False
    for s in STAGES:
        if s in stages and getattr(run, f"stage_{s}")():
            run.export()  # usable weights after every stage
            trained = True
    if not trained and not (run.out / "export" / "config.json").exists():
        run.export()
    if args.compact:
        compact(run.out, log=run.log)
    run.log(f"pipeline: finished in {(time.time() - t0) / 60:.1f} min of this call")
    return 0


if __name__ == "__main__":
    sys.exit(main())

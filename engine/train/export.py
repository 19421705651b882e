"""Export the trained default model from a training run folder into the shipped weights folder.

    python -m engine.train.export --run runs/default --classifier runs/classifier/classifier.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.models.default import WEIGHTS_DIR
from engine.train.auxab import AUX_DIMS
from engine.train.budget import trained_weights
from engine.train.gan import load_checkpoint
from engine.train.encoder import load_gan


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/default")
    ap.add_argument("--classifier", default="runs/classifier/classifier.pt")
    ap.add_argument("--out", default=str(WEIGHTS_DIR))
    args = ap.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    G, D, cfg = load_gan(run)
    G.load_state_dict(torch.load(run / "G_calibrated.pt", weights_only=True))
    states = {"generator": G.state_dict(), "discriminator": D.state_dict()}
    if (run / "encoder_ckpt.pt").exists():
        ck = load_checkpoint(run / "encoder_ckpt.pt")
        states["encoder"] = trained_weights(ck, "E")  # the weight average when training kept one
    if (run / "aux_ckpt.pt").exists():
        states["aux"] = trained_weights(load_checkpoint(run / "aux_ckpt.pt"), "aux")
    if Path(args.classifier).exists():
        states["classifier"] = torch.load(args.classifier, map_location="cpu", weights_only=True)
    for name, sd in states.items():
        save_file({k: v.detach().contiguous().float() for k, v in sd.items()}, str(out / f"{name}.safetensors"))
    ck = load_checkpoint(run / "ckpt.pt")
    meta_path = out / "config.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    training = {"gan_iterations": ck["it"], "gan_minutes": round(ck["spent"] / 60, 1)}
    for stage, f in (("encoder", "encoder_ckpt.pt"), ("aux", "aux_ckpt.pt")):
        if (run / f).exists():
            sck = load_checkpoint(run / f)
            training.update({f"{stage}_iterations": sck["it"], f"{stage}_minutes": round(sck["spent"] / 60, 1)})
    meta.update({"sngan": cfg.to_dict(), "aux": AUX_DIMS, "training": training})
    meta_path.write_text(json.dumps(meta, indent=1))
    total = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"exported {', '.join(states)} to {out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

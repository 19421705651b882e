#!/usr/bin/env bash
# The default model's whole training pipeline, in order (App. B.2: G + D, then E, then A/B), each stage
# resumable from its checkpoint in runs/ (git-ignored); then export, the projection benchmark, evaluation,
# gallery and model card. The default minutes are the shipped model's budgets (about 7 hours on 2 CPU cores);
# each is the stage's TOTAL, so a second run after an interruption only finishes what is left.
#   bash engine/train/pipeline.sh [GAN_MINUTES] [ENCODER_MINUTES] [AUX_MINUTES] [CLASSIFIER_MINUTES]
# This is v1's recipe (the shipped v1 model). Model v2 trains with one entry point for CPU and GPU:
# python -m engine.train.pipeline (engine/train/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m engine.train.data
python -m engine.train.gan --out runs/default --minutes "${1:-100}"
python -m engine.train.classifier --out runs/classifier --minutes "${4:-5}"
python -m engine.train.encoder --gan runs/default --minutes "${2:-115}"
python -m engine.train.auxab --gan runs/default --minutes "${3:-88}"
# 40 more minutes each at smaller steps, exporting a moving average of the weights (the shipped model ran these
# two side by side on one core each, the A/B stage with --follow-encoder; one after the other is the same recipe)
python -m engine.train.encoder --gan runs/default --minutes "$(( ${2:-115} + 40 ))" --lr 2e-4 --ema 0.99
python -m engine.train.auxab --gan runs/default --minutes "$(( ${3:-88} + 40 ))" --lr 5e-5 --ema 0.99
python -m engine.train.export --run runs/default --classifier runs/classifier/classifier.pt
python bench/projection.py --max-steps 400 --save engine/weights/default/projection_metrics.json
python -m engine.train.evaluate --out engine/weights/default/metrics.json --gallery docs/default_model_gallery.png
python -m engine.train.model_card

#!/usr/bin/env bash
# Train the default model on a GPU machine in one command (no network, no pip install: Python 3.12 with torch,
# numpy, safetensors, pillow and opencv is all it needs; run from the repository, PYTHONPATH=. is set here).
#
#   bash engine/train/gpu_run.sh DATA_DIR OUT_DIR [--smoke] [--minutes N] [--cpu]
#
# DATA_DIR holds the packed training set (*.pack, engine/train/data.py); OUT_DIR receives the checkpoints
# (gan.pt, encoder.pt, aux.pt, judge.pt: optimiser moments dropped at the end, see pipeline.compact), log.txt,
# samples.png and weights.tar (the exported model folder: fp16 safetensors + config.json; unpack it into
# engine/weights/default/ to ship it).  At most 8 files, each <= 16 MiB.  Default budget 8 minutes of training
# (<= 9 minutes in all); --smoke: imports, GPU name, a few steps and their it/s in well under a minute.
# A second call with the same OUT_DIR resumes (a larger --minutes trains on).  --cpu runs the same on the CPU
# with the tiny preset (the test suite does this).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash engine/train/gpu_run.sh DATA_DIR OUT_DIR [--smoke] [--minutes N] [--cpu]" >&2
    exit 2
fi
DATA_DIR=$1
OUT_DIR=$2
shift 2
SMOKE=0
MINUTES=8
DEVICE=cuda
PRESET=gpu
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --minutes) MINUTES=$2; shift ;;
        --cpu) DEVICE=cpu; PRESET=tiny ;;
        *) echo "gpu_run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
cd "$(dirname "$0")/../.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
PACK=$(ls "$DATA_DIR"/*.pack 2>/dev/null | head -n 1 || true)
if [ -z "$PACK" ]; then
    echo "gpu_run.sh: no *.pack file in $DATA_DIR (build one with: python -m engine.train.data pack --out FILE)" >&2
    exit 2
fi
mkdir -p "$OUT_DIR"
"$PY" - "$DEVICE" <<'EOF'
import sys, time
t = time.time()
import cv2, numpy, PIL, safetensors, torch  # noqa: F401,E401 - the machine's whole environment
dev = sys.argv[1]
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"opencv {cv2.__version__}; imports {time.time() - t:.1f}s", flush=True)
if dev == "cuda":
    if not torch.cuda.is_available():
        sys.exit("gpu_run.sh: torch sees no CUDA device (use --cpu to run on the CPU)")
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}", flush=True)
EOF
if [ "$SMOKE" = 1 ]; then
    # a few steps of every stage (seconds each), then the export: the whole path, timed
    "$PY" -m engine.train.pipeline --device "$DEVICE" --preset "$PRESET" --data "$PACK" --out "$OUT_DIR" \
        --minutes 0.4 --log-every 2 --compact --spectral 1
else
    "$PY" -m engine.train.pipeline --device "$DEVICE" --preset "$PRESET" --data "$PACK" --out "$OUT_DIR" \
        --minutes "$MINUTES" --log-every 100 --compact --spectral 1  # engine/train/spectral.py: no grid
fi
if [ -d "$OUT_DIR/export" ]; then
    tar -cf "$OUT_DIR/weights.tar" -C "$OUT_DIR" export
    rm -rf "$OUT_DIR/export"
fi
rm -f "$OUT_DIR"/*.tmp "$OUT_DIR"/G_calibrated.pt "$OUT_DIR"/run.json.bak
ls -la "$OUT_DIR"

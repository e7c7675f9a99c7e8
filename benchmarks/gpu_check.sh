#!/usr/bin/env bash
# First contact with a real NVIDIA GPU, prepared so it takes one call (docs/devices.md, "bench doctor").
#
#   benchmarks/gpu_check.sh OUTDIR [--cpu-fallback] [--light]
#
# From a source checkout on a bare machine with CUDA torch, onnx, onnxruntime (CPU), nvidia-ml-py, numpy,
# pandas, scipy, scikit-learn, matplotlib, jinja2 and tqdm: nothing is installed (no pip, no network);
# ticketbench is imported from this checkout through a PYTHONPATH folder of symlinks under OUTDIR
# (the installed namespace ticketbench.{bench,models,devices,reports}; SQLAlchemy, torchvision, tensorrt,
# onnxruntime-gpu may be absent). Steps, each logged to OUTDIR/<step>.log, all under one 450-s budget
# (the nvml step takes ~10 s):
#   1. doctor    python -m bench doctor --device gpu --json          (latency per backend, NVML sanity)
#   2. quick     python -m bench run --suite quick --device gpu       (torch-cuda, NVML energy, CUDA epochs)
#   3. eb_vgg16  python -m bench run on an EB VGG-16 search, synthetic CIFAR-shaped data, energy per epoch
#   4. devices   python benchmarks/bench_devices.py --quick --device gpu
#   5. nvml      python benchmarks/nvml_check.py   (each CUDA device found in NVML by its PCI bus id, as bytes,
#                under torch's name; energy counter vs polled power; the nvidia-ml-py version)
#   6. layers    python benchmarks/layer_profile_check.py   (every per-layer profiler present: TensorRT's IProfiler
#                when tensorrt imports, a real trtexec --exportProfile/--exportLayerInfo when trtexec is found, torch
#                profiler on CUDA; each read by our readers and mapped to the model; raw TensorRT files kept in
#                OUTDIR/layers/raw; on the CPU fallback, ONNX Runtime's profile and the readers over the fixtures)
# OUTDIR/summary.txt has one line per step (status, seconds, exit code); exit 0 when every step passed,
# 1 when one failed or nothing sane can run (the preflight says why within seconds), 2 on bad usage.
#
# --cpu-fallback (or TICKETBENCH_GPU_CHECK_CPU=1) runs the same steps on the CPU with tiny sizes, so CI
# exercises this script (tests/test_gpu_check.py). GPU_CHECK_SUITE=PATH.toml replaces the quick suite;
# --light removes the large binaries (ticket.pt, model.onnx) at the end, so what comes back from a lent
# machine stays small. GPU_CHECK_BUDGET_S (default 450) shortens the budget for a rerun.
# PYTHON picks the interpreter (default: the first of python3, python that imports torch).
set -u -o pipefail

usage() { echo "usage: $0 OUTDIR [--cpu-fallback] [--light]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUTDIR=$1; shift
CPU=${TICKETBENCH_GPU_CHECK_CPU:-0}
LIGHT=0
for arg in "$@"; do
  case $arg in
    --cpu-fallback) CPU=1 ;;
    --light) LIGHT=1 ;;
    *) usage ;;
  esac
done
case $OUTDIR in -*) usage ;; esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p -- "$OUTDIR" || { echo "gpu_check: cannot create $OUTDIR" >&2; exit 2; }
OUTDIR=$(cd -- "$OUTDIR" && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then  # the first interpreter on PATH that has torch, else python3 (the preflight says what is missing)
  for candidate in python3 python; do
    if command -v "$candidate" > /dev/null && "$candidate" -c 'import torch' > /dev/null 2>&1; then
      PY=$candidate; break
    fi
  done
  PY=${PY:-python3}
fi
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}  # every step together; the preflight takes seconds: the script ends within 8 minutes
case $BUDGET_S in ''|*[!0-9]*) usage ;; esac
START=$(date +%s)
SUMMARY=$OUTDIR/summary.txt
: > "$SUMMARY"
FAILED=0

say() { echo "gpu_check: $*" | tee -a "$SUMMARY"; }
fail_now() { say "FAILED preflight: $*"; exit 1; }

if [ "$CPU" = 1 ]; then
  DEVICE=cpu; TRAIN=cpu; MODE="cpu fallback"
else
  DEVICE=gpu; TRAIN=cuda; MODE="gpu"
fi

# -- import path: the checkout itself, without pip (ticketbench/__init__.py maps the top-level folders) --------
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# -- preflight: seconds, and the reason when nothing sane can run ------------------------------------------
command -v "$PY" > /dev/null || fail_now "no $PY on PATH (set PYTHON=...)"
"$PY" - "$DEVICE" > "$OUTDIR/env.txt" 2> "$OUTDIR/preflight.log" << 'EOF'
import importlib, platform, sys
device = sys.argv[1]
print("python", platform.python_version(), sys.executable)
missing = []
for mod in ("torch", "numpy", "onnx", "onnxruntime", "pandas", "scipy", "sklearn", "matplotlib", "jinja2", "tqdm"):
    try:
        m = importlib.import_module(mod)
        print(mod, getattr(m, "__version__", "?"))
    except Exception as exc:
        missing.append(f"{mod} ({exc})")
if sys.version_info < (3, 11):
    try:
        import tomli  # noqa: F401
    except ImportError:  # doctor and bench_devices still run; the suite steps will fail saying so
        print("WARNING tomli absent and Python < 3.11 has no tomllib: the suite steps cannot read TOML",
              file=sys.stderr)
for mod in ("pynvml", "tensorrt", "sqlalchemy", "torchvision", "onnxslim"):
    try:
        importlib.import_module(mod)
        print(mod, "present")
    except Exception as exc:
        print(mod, "absent:", exc)
if missing:
    sys.exit("missing: " + "; ".join(missing))
import onnxruntime as ort
import torch
print("onnxruntime providers", ort.get_available_providers())
print("torch.version.cuda", torch.version.cuda)
if device == "gpu":
    if not torch.cuda.is_available():
        sys.exit(f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda}): "
                 "nothing sane to run on a GPU; use --cpu-fallback on a CPU-only machine")
    print("cuda device", torch.cuda.get_device_name(0), "count", torch.cuda.device_count())
import ticketbench.bench.cli  # noqa: F401  the checkout imports through the shim
import ticketbench
print("ticketbench", ticketbench.__file__)
EOF
rc=$?
if [ $rc -ne 0 ]; then
  fail_now "$(tail -n 1 "$OUTDIR/preflight.log")"
fi
if command -v nvidia-smi > /dev/null; then
  nvidia-smi > "$OUTDIR/nvidia-smi.txt" 2>&1 || true
fi
grep '^WARNING' "$OUTDIR/preflight.log" | tee -a "$SUMMARY"
say "mode $MODE; python $("$PY" -c 'import sys; print(sys.version.split()[0])'); output in $OUTDIR"

# -- steps -------------------------------------------------------------------------------------------------
remaining() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

step() {  # step NAME LIMIT_S ARGV...: run with a timeout (never past the budget), log, record the outcome
  local name=$1 limit=$2; shift 2
  local left; left=$(remaining)
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    say "$name skipped: the ${BUDGET_S}-s budget is spent"; FAILED=1; return
  fi
  local t0; t0=$(date +%s)
  (cd -- "$OUTDIR" && timeout --kill-after=10 "$limit" "$@") > "$OUTDIR/$name.log" 2>&1
  local rc=$? t=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    say "$name ok ${t}s"
  else
    [ $rc -eq 124 ] && why="timed out after ${limit}s" || why="exit $rc"
    say "$name FAILED ($why, ${t}s): $(grep -v '^\s*$' "$OUTDIR/$name.log" | tail -n 1 | cut -c1-300)"
    FAILED=1
  fi
}

# the EB search as a one-case suite: data_options size the synthetic CIFAR-shaped set
if [ "$CPU" = 1 ]; then
  EB_DATA='{ n_train = 64, n_test = 32 }'; EB_EPOCHS=6; EB_OPTIONS='{ model_kwargs = { width = 0.0625 }, epsilon = 1.0 }'
  EB_MEASURE='batch_sizes = [1]
min_iterations = 5
min_seconds = 0.05
warmup_iterations = 2'
  QUICK=${GPU_CHECK_SUITE:-quick}
  DEVBENCH=(--smoke)
else
  EB_DATA='{ n_train = 16384, n_test = 1024 }'; EB_EPOCHS=10; EB_OPTIONS='{}'
  EB_MEASURE='batch_sizes = [1, 64]
min_iterations = 50
min_seconds = 1.0'
  QUICK=${GPU_CHECK_SUITE:-quick}
  DEVBENCH=(--quick --device gpu)
fi
cat > "$OUTDIR/eb_vgg16.toml" << EOF
# written by benchmarks/gpu_check.sh: an Early-Bird search of VGG-16 on synthetic CIFAR-shaped data
name = "gpu_check_eb"
description = "EB VGG-16 search + retrain with energy per epoch, against the measured dense baseline"

[defaults]
model = "vgg16"
dataset = "synthetic"
epochs = $EB_EPOCHS
finetune_epochs = 2
lr = 0.05
batch_size = 128
seed = 0
data_options = $EB_DATA
options = $EB_OPTIONS

[measure]
$EB_MEASURE

[[cases]]
method = "eb"
sparsity = 0.5
EOF

if [ -f "$QUICK" ]; then  # a suite file given relative to the caller's directory (steps run in OUTDIR)
  QUICK=$(cd -- "$(dirname -- "$QUICK")" && pwd)/$(basename -- "$QUICK")
fi
BENCH=("$PY" -m bench)
step doctor 90 "${BENCH[@]}" doctor --device "$DEVICE" --json --out "$OUTDIR/doctor"
step quick 180 "${BENCH[@]}" run --device "$DEVICE" --suite "$QUICK" --train-device "$TRAIN" \
  --out "$OUTDIR/quick" --db "$OUTDIR/ticketbench.sqlite" -q
step eb_vgg16 150 "${BENCH[@]}" run --device "$DEVICE" --suite "$OUTDIR/eb_vgg16.toml" --train-device "$TRAIN" \
  --out "$OUTDIR/eb_vgg16" --db "$OUTDIR/ticketbench.sqlite" -q
step devices 60 "$PY" "$REPO/benchmarks/bench_devices.py" "${DEVBENCH[@]}"
step nvml 30 "$PY" "$REPO/benchmarks/nvml_check.py" --json "$OUTDIR/nvml.json"
step layers 90 "$PY" "$REPO/benchmarks/layer_profile_check.py" --device "$DEVICE" --out "$OUTDIR/layers"

# -- what the runs measured, in one place ----------------------------------------------------------------------
"$PY" - "$OUTDIR" >> "$SUMMARY" 2>&1 << 'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
try:
    import pandas as pd
    for run in ("quick", "eb_vgg16"):
        csv = out / run / "results.csv"
        if csv.is_file():
            df = pd.read_csv(csv)
            cols = ["case_id", "batch_size", "status", "backend", "latency_ms_p50", "power_source",
                    "energy_mj_per_inference", "energy_j_per_train_epoch", "energy_j_ticket_training", "error"]
            print(f"-- {run}/results.csv")
            print(df[[c for c in cols if c in df]].to_string(index=False))
    for art in sorted((out / "eb_vgg16" / "tickets").glob("*/artifacts.json")):
        a = json.loads(art.read_text())
        print("-- EB training energy (J):", json.dumps(a.get("training_energy_j")))
        print("-- EB per-epoch energy (J):", json.dumps((a.get("training_energy") or {}).get("per_epoch_j")))
        print("-- eb_epoch:", a.get("eb_epoch"))
except Exception as exc:  # the summary must not hide the steps' own outcome
    print("summary of results failed:", exc)
EOF

if [ "$LIGHT" = 1 ]; then
  find "$OUTDIR" \( -name ticket.pt -o -name model.onnx -o -name '*.engine' \) -type f -delete
  say "--light: removed ticket.pt, model.onnx and TensorRT engine files"
fi
total=$(( $(date +%s) - START ))
if [ $FAILED -eq 0 ]; then
  say "all steps passed in ${total}s"
  exit 0
fi
say "some steps failed (${total}s); see $SUMMARY and the step logs"
exit 1

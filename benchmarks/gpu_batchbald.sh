#!/usr/bin/env bash
# The BatchBALD paper's MNIST and Repeated MNIST comparisons (issue 12) on a GPU, in pieces that fit device calls:
# batchbald, bald and random, seeds 0-2, 20 balanced labels + 10 a round up to 320 (`--method batchbald-mnist`,
# `--method batchbald-repeated-mnist`), and batchbald and power-bald at 100 a round in dalkit's own MNIST protocol,
# 24 runs at once. On this project's 2-core CPU a round of batchbald-mnist
# costs about 20 minutes of MC-dropout passes alone (100 samples of the BatchBALD network over 59,000 images), so
# the figures need a GPU. Each call goes on from the state the previous call brought back, stops its runs itself
# `SECONDS_LEFT` seconds after it starts (killed: a run cut off mid-cycle goes on from its last completed cycle next
# time) and brings back every completed cycle (state.tgz, without models) and the tables so far (tables.md).
#
#   here, once:  echo /.gpu-data/ >> .git/info/exclude; echo /.gpu-state/ >> .git/info/exclude
#                mkdir -p .gpu-data/MNIST/raw .gpu-state
#                for f in DATA/MNIST/raw/*-ubyte; do gzip -c "$f" > .gpu-data/MNIST/raw/$(basename "$f").gz; done
#   device:      run(command="SECONDS_LEFT=480 bash benchmarks/gpu_batchbald.sh", carry=[".gpu-data/MNIST", ".gpu-state"],
#                    timeout_s=560)
#   here, after: cp FILES_AT/state.tgz .gpu-state/      (and call again until every run has its 31 cycles)
#
# Extra arguments go to both `dalkit compare` calls (a dry run on a CPU: `DEVICE=cpu JOBS=1 SECONDS_LEFT=120 bash
# benchmarks/gpu_batchbald.sh --candidates 100 --epochs 1 --cycles 3`).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-.gpu-data}
out=${OUT:-/tmp/gpu-batchbald-out}
state=${STATE:-.gpu-state}/state.tgz
work=$(mktemp -d)
mkdir -p "$out"
[ -f "$state" ] && tar xzf "$state" -C "$work"
command -v nvidia-smi >/dev/null && nvidia-smi -L
pids=()
start() {  # NAME COMPARE-ARGS...: one comparison in $work/NAME, continued when the state holds it
    local name=$1 where=(--out "$work/$1")
    shift
    [ -d "$work/$name" ] && where=(--resume "$work/$name")
    setsid env PYTHONPATH=src python3 -m dalkit.cli compare --data-root "$data" --device "${DEVICE:-cuda}" \
        --executor processes --seeds 0,1,2 --targets 90,95 "${where[@]}" "$@" "${extra[@]}" >"$work/$name.log" 2>&1 &
    pids+=($!)
}
extra=("$@")
for method in batchbald-mnist batchbald-repeated-mnist; do
    start "$method" --method "$method" --strategies batchbald,bald,random --jobs "${JOBS:-9}"
done
# dalkit's own MNIST protocol (benchmarks/README.md): the rows the 2026-12-04 GPU run left unfinished
start mnist-batch-aware --dataset mnist --model-option width=16 --epochs 60 --batch-size 16 --initial 100 \
    --budget 100 --cycles 5 --strategies batchbald,power-bald --jobs "${JOBS:-6}"
deadline=$((SECONDS + ${SECONDS_LEFT:-480}))
while [ $SECONDS -lt $deadline ] && kill -0 "${pids[@]}" 2>/dev/null; do sleep 5; done
for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
wait || true
for name in batchbald-mnist batchbald-repeated-mnist mnist-batch-aware; do tail -n 12 "$work/$name.log"; done
tar czf "$out/state.tgz" --exclude=model.pt --exclude='*.lock' --exclude='*.log' -C "$work" .
for name in batchbald-mnist batchbald-repeated-mnist; do
    echo "$name"
    PYTHONPATH=src python3 benchmarks/stopped_runs.py "$work/$name" --order batchbald,bald,random --targets 90,95 \
        --budgets 50,70,100,200 --markdown
done | tee "$out/tables.md"
echo mnist-batch-aware | tee -a "$out/tables.md"
PYTHONPATH=src python3 benchmarks/stopped_runs.py "$work/mnist-batch-aware" --targets 90,95 \
    --budgets 100,200,300,400,500 --markdown | tee -a "$out/tables.md"

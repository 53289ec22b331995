#!/usr/bin/env bash
# One round of the papers' own CIFAR-10 protocol on a GPU (issue 16): full-width ResNet-18, 1,000 random labels,
# 200 epochs (`--method cifar10-paper --cycles 1`), for random (CE), learning-loss and cskd-sa, seeds 0-2, all
# nine runs at once on the one GPU. A device machine fetches nothing and takes at most 64 MiB, so the data travel
# as a part of CIFAR-10 (benchmarks/cifar_subset.py: 2,000 random training images, the whole test set).
#
#   here, once:  echo /.gpu-data/ >> .git/info/exclude
#                python benchmarks/cifar_subset.py DATA .gpu-data --train 2000
#   device:      run(command="bash benchmarks/gpu_pang_round.sh", carry=[".gpu-data/cifar-10-batches-py"], timeout_s=480)
#
# Extra arguments go to `dalkit compare` (e.g. `--epochs 2` for a dry run on a CPU with `DEVICE=cpu`). What comes
# back in $OUT: the comparison's table (summary.md, summary.txt) and its records without models (runs.tgz).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-.gpu-data}
out=${OUT:-/tmp/gpu-pang-out}
work=$(mktemp -d)
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi -L
start=$(date +%s)
PYTHONPATH=src python3 -m dalkit.cli compare --method cifar10-paper --data-root "$data" --device "${DEVICE:-cuda}" \
    --executor processes --jobs 9 --cycles 1 --strategies random --methods learning-loss,cskd-sa --seeds 0,1,2 \
    --out "$work/pang-round" "$@" 2>&1 | grep -v "^train:" | tail -n 60
echo "wall time: $(($(date +%s) - start)) s"
cp "$work"/pang-round/summary.md "$work"/pang-round/summary.txt "$out"/
tar czf "$out/runs.tgz" --exclude=model.pt --exclude=selections.jsonl -C "$work" pang-round

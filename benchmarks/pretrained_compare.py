"""`dalkit compare` on real CIFAR-10 with the frozen bundled EfficientNet-Lite0 and a linear head.

The features of the 60,000 images are extracted once per resolution (cached under $DALKIT_CACHE or
~/.cache/dalkit/pretrained, so every strategy and seed after the first reads them); each cycle then trains only
the head. Two protocols (issue #13):

- `low`: Gupte et al.'s low-budget one, 1 label per class to start (balanced), 10 a round, evaluated at 10, 20, ...,
  200 labels;
- `hundred`: 100 initial + 100 a round up to 2,000 labels (20 evaluations, 19 rounds of selection; `--cycles`
  counts evaluations).

Run on an idle machine (the first run of a resolution spends most of its time on the extraction):

    PYTHONPATH=src python benchmarks/pretrained_compare.py --protocol hundred --out runs/pretrained-hundred
    PYTHONPATH=src python benchmarks/pretrained_compare.py --protocol low --seeds 0,1,2,3,4 --out runs/pretrained-low

`--jobs 2` runs two runs at once (set OMP_NUM_THREADS=1 so that each takes one core).

`--resume` continues the comparison in `--out` (its finished runs are kept), e.g. with more seeds.

It prints dalkit compare's table: mean +- std test accuracy per budget and AULC for each strategy, over the seeds.
"""

from __future__ import annotations

import argparse
import sys

from dalkit.cli import main as dalkit

PROTOCOLS = {
    "low": ["--initial", "10", "--initial-mode", "balanced", "--budget", "10", "--cycles", "20"],
    "hundred": ["--initial", "100", "--budget", "100", "--cycles", "20"],
}
STRATEGIES = "random,entropy,margin,bald,badge,coreset,typiclust,probcover,power-bald,cluster-margin"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="hundred")
    parser.add_argument("--strategies", default=STRATEGIES)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--head", choices=("linear", "mlp"), default="linear")
    parser.add_argument("--data-root", default="/work/data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/pretrained-compare")
    parser.add_argument("--resume", action="store_true", help="continue the comparison in --out")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (one core each)")
    parser.add_argument("--targets", help="accuracies in %% (e.g. 79.04, 95%% of the ceiling): labels to reach each")
    args = parser.parse_args()
    command = [
        "compare",
        *("--dataset", "cifar10", "--data-root", args.data_root, "--device", args.device),
        *("--resume" if args.resume else "--out", args.out),
        *("--model", "efficientnet-lite0", "--model-option", f"resolution={args.resolution}"),
        *("--model-option", f"head={args.head}", "--strategies", args.strategies, "--seeds", args.seeds),
        *PROTOCOLS[args.protocol],
        *(["--targets", args.targets] if args.targets else []),
        *(["--executor", "processes", "--jobs", str(args.jobs)] if args.jobs > 1 else []),
    ]
    print("dalkit " + " ".join(command), flush=True)
    return dalkit(command)


if __name__ == "__main__":
    sys.exit(main())

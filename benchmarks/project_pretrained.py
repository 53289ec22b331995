"""The labelling project's accuracy estimate against the truth (issue #13): real CIFAR-10 images written as files.

For each seed: `--images` training images of airplane, frog and truck (balanced, drawn by the seed) are written
as PNG files, with the three classes' 3,000 CIFAR-10 test images beside them as the held-out set. For each model
(`--models`: the project's default, the frozen pretrained efficientnet-lite0, and resnet18, the project's
from-scratch default before it, and small-cnn) a project is created as `dalkit project create` would (160 px
images for a pretrained encoder, else 32 px) and driven like a person: ask `--step` images, label them from the
true classes (the oracle), ask again. The first ask, with nothing labelled, is a random sample; each later one
trains on the labels so far, and for it the table gives:

- estimate: the accuracy the project stored with the round (what `dalkit project status` shows: cross-validation
  for the frozen encoder, the previous round's hit rate on the images labelled since for the others, see
  `dalkit.project.estimate`), and how it was made;
- held-out: the true accuracy of the model that round trained (its model.pt, through the project's predict API)
  on the held-out images;
- seconds: the seconds the ask took (the frozen encoder's first trained ask includes extracting the features of
  every image; the later ones read them from the cache).

Run on an idle machine (the full figure: 3 seeds x 3 models x 3 rounds; resnet18 trains 200 epochs a round):

    PYTHONPATH=src python benchmarks/project_pretrained.py --seeds 0,1,2

A quick check: --images 60 --step 10 --models efficientnet-lite0 --test 300.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from records import device_name, save

from dalkit.data.cifar import load_cifar10
from dalkit.models import model_entry
from dalkit.project import Project
from dalkit.project.cli import DEFAULT_MODEL, PRETRAINED_IMAGE_SIZE
from dalkit.project.estimate import CROSS_VALIDATION, Estimate
from dalkit.report import markdown_table
from dalkit.seeding import resolve_device

CLASSES = ["airplane", "frog", "truck"]
QUIET = {"log": lambda _: None, "progress": False}


def write_images(folder: Path, images: torch.Tensor, names: list[str]) -> dict[str, str]:
    """uint8 (N, 3, H, W) images as PNG files in `folder`; file name -> class name (the oracle)."""
    folder.mkdir(parents=True)
    truth = {}
    for k, (pixels, name) in enumerate(zip(images, names)):
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(folder / f"{k:05d}.png")
        truth[f"{k:05d}.png"] = name
    return truth


def chosen(labels: torch.Tensor, classes: list[str], count: int | None, seed: int) -> tuple[np.ndarray, list[str]]:
    """`count` images (all if None) of `CLASSES`, as balanced as the count allows, drawn by `seed`, in random
    order; with their class names."""
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(np.flatnonzero(labels.numpy() == classes.index(c))) for c in CLASSES]
    turns = [group[k] for k in range(max(map(len, groups))) for group in groups if k < len(group)]  # a, b, c, a, ...
    indices = rng.permutation(np.array(turns[:count]))
    return indices, [classes[labels[i]] for i in indices]


def how(estimate: Estimate | None) -> str:
    """How the project made its estimate, in a few words."""
    if estimate is None:
        return "none stored"
    if estimate.method == CROSS_VALIDATION:
        return "not enough labels" if estimate.accuracy is None else f"{estimate.folds}-fold CV"
    if estimate.accuracy is None:
        return "no earlier model"
    return f"round {estimate.model_round} model on the {estimate.labels} labelled since"


def run(model: str, seed: int, work: Path, truth: dict[str, str], held_out: dict[str, str], args) -> list[dict]:
    """A project over work/images driven by the oracle, judged on work/held-out; a row per trained ask."""
    size = PRETRAINED_IMAGE_SIZE if model_entry(model).pretrained else 32  # as `dalkit project create` chooses
    project = Project.create(
        work / f"project-{model}",
        work / "images",
        CLASSES,
        model=model,
        image_size=size,
        budget=args.step,
        seed=seed,
        device=args.device,
    )
    files = [work / "held-out" / name for name in held_out]
    rows = []
    for number in range(args.rounds + 1):
        asked = project.ask(**QUIET)
        if number:
            estimate = project.store.latest_estimate()
            predicted = project.predict_files(files)
            right = sum(guess == held_out[Path(file).name] for file, guess, _, _ in predicted)
            row = {
                "model": model,
                "seed": seed,
                "labels": number * args.step,
                "estimate": None if estimate is None else estimate.accuracy,
                "how": how(estimate),
                "held_out": right / len(files),
                "seconds": asked.seconds,
            }
            rows.append(row)
            save({"benchmark": "project_pretrained", "images": args.images, "device": args.device_name, **row})
            print(row, flush=True)
        project.record_labels([(path, truth[path]) for path in asked.paths], source="oracle")
    project.close()
    return rows


def percent(values: list[float | None]) -> str:
    """Mean (and +- std over seeds) in %, '-' where a value is missing."""
    known = [100 * v for v in values if v is not None]
    if not known:
        return "-"
    spread = f" +- {statistics.stdev(known):.1f}" if len(known) > 1 else ""
    return f"{statistics.mean(known):.1f}{spread}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (each draws its images); default 0")
    parser.add_argument("--models", default=f"{DEFAULT_MODEL},resnet18,small-cnn")
    parser.add_argument("--data-root", default="/work/data", help="the folder holding cifar-10-batches-py")
    parser.add_argument("--images", type=int, default=500, help="training images written as files; default 500")
    parser.add_argument("--step", type=int, default=30, help="images asked (and labelled) per round; default 30")
    parser.add_argument("--rounds", type=int, default=3, help="trained rounds; default 3 (30, 60, 90 labels)")
    parser.add_argument("--test", type=int, help="held-out images; default all 3,000 of the three classes")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.device_name = device_name(resolve_device(args.device))
    cifar = load_cifar10(Path(args.data_root))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in (int(s) for s in args.seeds.split(",")):
            work = Path(folder) / f"seed-{seed}"
            train, names = chosen(cifar.train.labels, cifar.train.classes, args.images, seed)
            truth = write_images(work / "images", cifar.train.images[train], names)
            test, test_names = chosen(cifar.test.labels, cifar.test.classes, args.test, seed)
            held_out = write_images(work / "held-out", cifar.test.images[test], test_names)
            for model in args.models.split(","):
                rows += run(model, seed, work, truth, held_out, args)
    print(f"\n{args.images} images of {', '.join(CLASSES)}; {len(held_out)} held out; {args.device_name}\n")
    headers = ["model", "labels", "estimate %", "how", "true held-out %", "seconds per ask"]
    table = []
    for model in args.models.split(","):
        for labels in sorted({r["labels"] for r in rows}):
            runs = [r for r in rows if (r["model"], r["labels"]) == (model, labels)]
            made = "; ".join(sorted({r["how"] for r in runs}))
            seconds = f"{statistics.mean(r['seconds'] for r in runs):.1f}"
            estimate, truth = percent([r["estimate"] for r in runs]), percent([r["held_out"] for r in runs])
            table.append([model, labels, estimate, made, truth, seconds])
    print(markdown_table(headers, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

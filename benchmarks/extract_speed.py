"""Feature extraction throughput of the bundled EfficientNet-Lite0 (images/s), per resolution and setting.

Times `dalkit.features.pretrained.extract` (what frozen mode runs once per data set) on real CIFAR-10 test images
(random images when the data set is absent) at 96, 160 and 224 px, for fp32 vs bf16 autocast and channels_last on
vs off, after one warm-up batch. Run on an idle machine:

    PYTHONPATH=src python benchmarks/extract_speed.py --images 512          # CPU, all threads
    PYTHONPATH=src python benchmarks/extract_speed.py --device cuda --images 4096

It prints one line per (resolution, precision, layout) with images/s and appends each to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
from records import device_name, save

from dalkit.data import load_dataset
from dalkit.features.pretrained import extract
from dalkit.models import create_model


def cifar_images(root: str, n: int) -> torch.Tensor:
    if Path(root, "cifar-10-batches-py").is_dir():
        return load_dataset("cifar10", root).test.images[:n]
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--resolutions", default="96,160,224")
    parser.add_argument("--data-root", default="/work/data")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    images = cifar_images(args.data_root, args.images)
    print(f"{len(images)} images on {device_name(device)}")
    for resolution in (int(r) for r in args.resolutions.split(",")):
        model = create_model("efficientnet-lite0", 10, resolution=resolution).to(device)
        for precision, channels_last in itertools.product(("fp32", "bf16"), (True, False)):
            run = dict(batch_size=args.batch_size, precision=precision, channels_last=channels_last, progress=False)
            extract(model, images[: args.batch_size], device, **run)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            extract(model, images, device, **run)
            rate = len(images) / (time.perf_counter() - start)
            layout = "channels_last" if channels_last else "contiguous"
            print(f"{resolution:4d} px  {precision}  {layout:13s}  {rate:8.1f} images/s")
            save(
                {
                    "benchmark": "extract_speed",
                    "device": device_name(device),
                    "resolution": resolution,
                    "precision": precision,
                    "channels_last": channels_last,
                    "images": len(images),
                    "images_per_second": rate,
                }
            )


if __name__ == "__main__":
    main()

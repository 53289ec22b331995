"""Shared fixtures: tiny query contexts built from a real small model and hand-made images; a tiny PNG folder
for labelling projects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dalkit.data.augment import Normalizer
from dalkit.data.pool import Pool
from dalkit.models import create_model
from dalkit.runtime import isolated_rng
from dalkit.seeding import make_generator
from dalkit.strategies import QueryContext


def make_context(
    pool_size: int = 37,
    labelled: int = 5,
    num_classes: int = 3,
    seed: int = 0,
    chunk_size: int = 8,
    model_seed: int = 0,
    heads: dict | None = None,
) -> QueryContext:
    """A context over `pool_size` random 8x8 images; the first `labelled` are labelled. The model has the
    `loss-prediction` head (what the learning-loss strategy reads) unless `heads` says otherwise."""
    images = torch.randint(0, 256, (pool_size, 1, 8, 8), generator=make_generator(123), dtype=torch.uint8)
    heads = {"loss-prediction": {}} if heads is None else heads
    with isolated_rng(model_seed):
        model = create_model("small-cnn", num_classes=num_classes, in_channels=1, image_size=8, width=8, heads=heads)
    pool = Pool(pool_size)
    if labelled:
        pool.label(np.arange(labelled), np.arange(labelled) % num_classes, cycle=0)
    return QueryContext(
        model=model,
        images=images,
        normalizer=Normalizer(torch.tensor([0.5]), torch.tensor([0.25])),
        pool=pool,
        candidates=pool.unlabelled_indices(),
        generator=make_generator(seed),
        batch_size=16,
        chunk_size=chunk_size,
    )


@pytest.fixture
def context_factory():
    return make_context


def grey_image(path: Path, level: int, rng: np.random.Generator) -> None:
    pixels = np.clip(level + rng.integers(-12, 13, size=(8, 8, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    """30 dark images (class 'night'), 30 bright ones ('day') and 6 mid-grey ones that could be either."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    (root / "more").mkdir(parents=True)
    for k in range(30):
        grey_image(root / f"dark{k:02d}.png", 30, rng)
        grey_image(root / "more" / f"bright{k:02d}.png", 225, rng)
    for k in range(6):
        grey_image(root / f"grey{k}.png", 128, rng)
    return root


@pytest.fixture
def shapes(tmp_path):
    """A tiny image folder: two classes of flat 8x8 images."""
    root = tmp_path / "shapes"
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True)
        for i in range(8):
            pixels = np.full((8, 8, 3), 40 + 150 * label + i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{label}" / f"{i}.png")
    return root


@pytest.fixture
def page_client(folder, tmp_path):
    """A project with its first round asked, the page's TestClient and the CSRF header its script sends."""
    from test_project import SETTINGS
    from test_project_safety import QUIET
    from test_project_web import csrf, make_client

    from dalkit.project import Project

    project = Project.create(tmp_path / "p", folder, ["night", "day"], **SETTINGS)
    asked = project.ask(**QUIET)
    client = make_client(project)
    return project, asked, client, csrf(client)

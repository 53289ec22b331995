"""Batch augmentation: crops are shifted windows of the zero-padded image; flips mirror rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalkit.data.augment import random_crop, random_flip
from dalkit.runtime import batch_slices
from dalkit.seeding import make_generator


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.randint(1, 256, (50, 3, 6, 6), dtype=torch.uint8)
    out = random_crop(x, 2, make_generator(0))
    padded = F.pad(x, (2, 2, 2, 2))
    offsets_seen = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6])
        ]
        assert matches, "crop is not a window of the padded image"
        offsets_seen.update(matches)
    assert len(offsets_seen) > 5  # offsets really vary across the batch


def test_random_flip_mirrors_about_half():
    x = torch.arange(200 * 4, dtype=torch.float32).view(200, 1, 1, 4)
    out = random_flip(x, make_generator(0))
    flipped = (out == x.flip(3)).all(dim=(1, 2, 3))
    same = (out == x).all(dim=(1, 2, 3))
    assert (flipped | same).all()
    assert 60 < flipped.sum() < 140


def test_batch_slices_cover_everything_but_a_lone_last_image():
    assert [s.stop - s.start for s in batch_slices(10, 4)] == [4, 4, 2]
    assert [s.stop - s.start for s in batch_slices(9, 4)] == [4, 4]
    assert [s.stop - s.start for s in batch_slices(1, 4)] == [1]

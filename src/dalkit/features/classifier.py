"""The classifier's own representation: softmax probabilities and penultimate embeddings of a stream of batches.

Computed under inference mode in eval mode, in large batches; the query context caches them per cycle so every
strategy need reads one pass over the pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from dalkit.data.augment import Normalizer
from dalkit.models.base import Classifier, model_input
from dalkit.runtime import autocast


class Outputs(NamedTuple):
    """Softmax probabilities (n, C) and penultimate embeddings (n, d), float32 on the device."""

    probs: torch.Tensor
    embeddings: torch.Tensor


def image_batches(
    images: torch.Tensor, normalizer: Normalizer, indices: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """Normalised batches of `images[indices]` on the device, in order (the last batch may be short)."""
    index = torch.as_tensor(indices, dtype=torch.long)
    for start in range(0, len(index), batch_size):
        chunk = images[index[start : start + batch_size]].to(device, non_blocking=True)
        yield model_input(normalizer(chunk))


def predict(model: Classifier, batches: Iterator[torch.Tensor], device: torch.device) -> Outputs:
    """Probabilities and embeddings for a stream of batches, in eval mode under inference mode."""
    was_training = model.training
    model.eval()
    probs, embeddings = [], []
    with torch.inference_mode(), autocast(device):
        for x in batches:
            out = model(x)
            probs.append(out.logits.float().softmax(dim=1))
            embeddings.append(out.embedding.float())
    model.train(was_training)
    if not probs:
        empty = torch.empty(0, model.num_classes, device=device)
        return Outputs(empty, torch.empty(0, model.embedding_dim, device=device))
    return Outputs(torch.cat(probs), torch.cat(embeddings))

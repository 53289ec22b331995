"""MoBYv2AL's selection (Caramalau, Bhattarai, Stoyanov & Kim, BMVC 2022): Core-Set on the SSL-trained encoder.

After joint training (cross-entropy + MoBY, objective "moby"), the reference extracts the query
encoder's 512-d features of the candidate subset and of the labelled set and runs k-center greedy
(farthest-first traversal, euclidean) with the labelled images as centres, `budget` times. That is
dalkit's Core-Set on the model's penultimate embedding, which is the query encoder's output.

One difference: the reference extracts those features through its training data loader, i.e. on
randomly cropped and flipped images; here they are computed on the images as they are.
"""

from __future__ import annotations

from dalkit.strategies.coreset import CoreSet
from dalkit.strategies.registry import register_strategy


@register_strategy("mobyv2al")
class MoBYv2AL(CoreSet):
    """MoBYv2AL: k-center greedy on the query encoder's embeddings, labelled images as centres."""

    needs_head = "moby"  # the embeddings it reads are the ones the MoBY objective shapes
    reads_pixels = True  # MoBY learns from augmented views of the images

    def __init__(self) -> None:
        super().__init__()

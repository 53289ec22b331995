"""The Pool: which training images are labelled, with what label, and in which cycle.

Labels live here (not in the data set) so the trainer sees only what the oracle or the person gave;
`cycle` remembers when each label came in (baal style), and `state_dict` round-trips the whole state.

Validation images (`set_validation`) are held out of active learning: labelled for model selection (early stopping,
`dalkit.train`), never trained on, never a candidate (`unlabelled_indices` leaves them out) and never labelled for
training. Both Bayesian AL references take them out of the pool the same way: BatchBALD's `extract_dataset` of
the available set after the initial samples, Gal et al.'s Keras code a slice disjoint from its pool.
"""

from __future__ import annotations

import numpy as np

from dalkit.errors import DalkitError

UNLABELLED = -1


class Pool:
    def __init__(self, size: int) -> None:
        self.labels = np.full(size, UNLABELLED, dtype=np.int64)
        self.cycle = np.full(size, UNLABELLED, dtype=np.int64)
        self.validation_labels = np.full(size, UNLABELLED, dtype=np.int64)

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def labelled_mask(self) -> np.ndarray:
        return self.labels != UNLABELLED

    def labelled_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labelled_mask)

    def unlabelled_indices(self) -> np.ndarray:
        """The images AL may still ask for: neither labelled nor held out for validation."""
        return np.flatnonzero(~self.labelled_mask & ~self.validation_mask)

    @property
    def validation_mask(self) -> np.ndarray:
        return self.validation_labels != UNLABELLED

    def validation_indices(self) -> np.ndarray:
        return np.flatnonzero(self.validation_mask)

    def set_validation(self, indices: np.ndarray, labels: np.ndarray) -> None:
        """Hold `indices` out of AL as the validation set, with their `labels`; labelled images cannot be."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if indices.shape != labels.shape:
            raise ValueError("one label per index is needed")
        if len(indices) and self.labelled_mask[indices].any():
            raise ValueError("a labelled training image cannot also be a validation image")
        if (labels < 0).any():
            raise DalkitError("a label is negative; labels must be class numbers from 0.")
        self.validation_labels[:] = UNLABELLED
        self.validation_labels[indices] = labels

    @property
    def num_labelled(self) -> int:
        return int(self.labelled_mask.sum())

    def label(self, indices: np.ndarray, labels: np.ndarray, cycle: int) -> None:
        """Record labels for `indices`; relabelling an image or an out-of-range index is refused."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if indices.shape != labels.shape:
            raise ValueError("one label per index is needed")
        if len(np.unique(indices)) != len(indices):
            raise ValueError("an index appears twice in one labelling step")
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise DalkitError(f"an index is outside the pool of {len(self)} images; check the selection.")
        if self.labelled_mask[indices].any():
            raise ValueError("an image that is already labelled was selected again")
        if self.validation_mask[indices].any():
            raise ValueError("a validation image was selected for training")
        if (labels < 0).any():
            raise DalkitError("a label is negative; labels must be class numbers from 0.")
        self.labels[indices] = labels
        self.cycle[indices] = cycle

    def forget_after(self, cycle: int) -> None:
        """Unlabel the images labelled after `cycle` (a run going on from that cycle after an interruption)."""
        later = self.cycle > cycle
        self.labels[later] = UNLABELLED
        self.cycle[later] = UNLABELLED

    def state_dict(self) -> dict:
        """Size, labelled indices with their labels and cycles, and (only when there is one) the validation set."""
        labelled = self.labelled_indices()
        state: dict = {
            "size": len(self),
            "indices": labelled.tolist(),
            "labels": self.labels[labelled].tolist(),
            "cycle": self.cycle[labelled].tolist(),
        }
        validation = self.validation_indices()
        if len(validation):
            state["validation"] = {
                "indices": validation.tolist(),
                "labels": self.validation_labels[validation].tolist(),
            }
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> Pool:
        pool = cls(int(state["size"]))
        indices = np.asarray(state["indices"], dtype=np.int64)
        pool.labels[indices] = np.asarray(state["labels"], dtype=np.int64)
        pool.cycle[indices] = np.asarray(state["cycle"], dtype=np.int64)
        validation = state.get("validation")
        if validation:
            pool.set_validation(np.asarray(validation["indices"]), np.asarray(validation["labels"]))
        return pool

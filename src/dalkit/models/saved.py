"""A trained classifier on disk (`RUN_DIR/model.pt`): what is needed to rebuild it and feed it images.

Every run saves its final model this way; `dalkit distill` and the distillation objectives load a run's
model as a teacher. The file holds the model's registered name and options, the heads its objectives
trained, the data shape, the class names, the channel statistics its inputs were normalised with, and the weights.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from dalkit.data.augment import Normalizer
from dalkit.errors import DalkitError
from dalkit.files import atomic_file
from dalkit.models import create_model
from dalkit.models.base import Classifier, prepare_model

MODEL_FILE = "model.pt"


@dataclass
class SavedModel:
    """A classifier rebuilt from disk, in eval mode, with the normaliser its training used."""

    model: Classifier
    name: str
    normalizer: Normalizer
    classes: list[str]


def save_classifier(
    path: Path, model: Classifier, name: str, options: dict, image_shape: tuple, classes: list, normalizer: Normalizer
) -> None:
    """Write the model to `path` through a temporary file and a rename: a crash leaves the old file or the new."""
    c, h, _ = image_shape
    saved = {
        "model": name,
        "model_options": options,
        "heads": dict(getattr(model, "head_options", {})),
        "num_classes": model.num_classes,
        "in_channels": c,
        "image_size": h,
        "classes": list(classes),
        "mean": normalizer.mean.flatten().cpu(),
        "std": normalizer.std.flatten().cpu(),
        "state_dict": model.state_dict(),
    }
    with atomic_file(path, "xb") as handle:
        torch.save(saved, handle)


def model_file(path: str | Path) -> Path:
    """`path` itself if it is a file, else `path/model.pt`; a clear error when there is none."""
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise DalkitError(
            f"no trained model at {file}; give a run directory that finished (it holds {MODEL_FILE}) or a model file."
        )
    return file


def load_classifier(path: str | Path, device: torch.device) -> SavedModel:
    """The model saved in a run directory (or a model file), on `device`, in eval mode."""
    file = model_file(path)
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
        model = create_model(
            saved["model"],
            saved["num_classes"],
            in_channels=saved["in_channels"],
            image_size=saved["image_size"],
            heads=saved.get("heads", {}),
            **saved["model_options"],
        )
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise DalkitError(f"{file} is not a model saved by dalkit ({error}); point to a run's {MODEL_FILE}.") from None
    model = prepare_model(model, device).eval()
    normalizer = Normalizer(saved["mean"], saved["std"]).to(device)
    return SavedModel(model, saved["model"], normalizer, saved["classes"])


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_megabytes(model: torch.nn.Module) -> float:
    """Parameters and buffers in float32, in MB (what the saved weights take)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20

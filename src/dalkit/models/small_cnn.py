"""Small CNNs that train in seconds on a CPU.

- `small-cnn`: three conv-BN-ReLU layers and global average pooling (any image size), dropout
  before the classifier; the fast default for the embedded digits and for MNIST-sized data.
- `mnist-cnn`: the classic PyTorch MNIST example network used by other AL toolkits' examples (two
  3x3 convolutions of 32 and 64 channels, max-pool, dropout 0.25, a 128-unit layer, dropout 0.5).
"""

from __future__ import annotations

import torch
from torch import nn

from dalkit.models.base import Classifier, ModelOutput, StagedClassifier, TrainDefaults
from dalkit.models.registry import register_model


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SmallCNN(StagedClassifier):
    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32, dropout: float = 0.3):
        stages = [
            conv_bn(in_channels, width),
            nn.Sequential(conv_bn(width, 2 * width), nn.MaxPool2d(2)),
            conv_bn(2 * width, 4 * width),
        ]
        super().__init__(nn.Identity(), stages, (width, 2 * width, 4 * width), num_classes, dropout)


class MnistCNN(Classifier):
    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_dim = 128
        self.conv1 = nn.Conv2d(in_channels, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        side = (image_size - 4) // 2
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, num_classes)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        # relu(max_pool(x)) == max_pool(relu(x)); pooling first makes the second relu 4x cheaper.
        x = nn.functional.relu(self.conv1(x), inplace=True)
        x = nn.functional.max_pool2d(self.conv2(x), 2)
        return nn.functional.relu(x, inplace=True).flatten(1)

    def head(self, z: torch.Tensor) -> ModelOutput:
        embedding = torch.relu(self.fc1(self.dropout1(z)))
        return ModelOutput(self.fc2(self.dropout2(embedding)), embedding)


@register_model(
    "small-cnn",
    TrainDefaults(epochs=60, lr=0.05, milestones=(45,), batch_size=32),
    "3 conv layers + global pooling, dropout 0.3; seconds on a CPU",
)
def small_cnn(
    num_classes: int, in_channels: int = 1, image_size: int = 28, width: int = 32, dropout: float = 0.3
) -> SmallCNN:
    return SmallCNN(num_classes, in_channels, width, dropout)


@register_model(
    "mnist-cnn",
    TrainDefaults(epochs=10, lr=0.05, milestones=(), batch_size=64),
    "the classic PyTorch MNIST example network (dropout 0.25 / 0.5)",
)
def mnist_cnn(num_classes: int, in_channels: int = 1, image_size: int = 28) -> MnistCNN:
    return MnistCNN(num_classes, in_channels, image_size)

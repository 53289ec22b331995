"""The MC-dropout CNNs of the two Bayesian active learning papers on MNIST.

`gal-cnn`: Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML 2017 (arXiv 1703.02910),
the MNIST experiments' model: convolution-relu-convolution-relu-max pooling-dropout-dense-relu-dropout-dense-softmax,
32 convolution kernels of 4x4, 2x2 pooling, a 128-unit dense layer, dropout probabilities 0.25 and 0.5 (the shape of
the Keras MNIST example, which the paper follows). It differs from `mnist-cnn` (3x3 convolutions of 32 and 64
channels). The authors' released Keras scripts (github.com/Riashat/Deep-Bayesian-Active-Learning,
`MC_Dropout_Keras/*_Paper*.py`) use `nb_conv = 3` and `nb_pool = 5` instead: `--model-option kernel=3 pool=5` builds
that network. Only the
128-unit dense layer's weights carry the L2 penalty there (`Dense(128, W_regularizer=l2(c / N))`), so
`no_weight_decay` names every other parameter and the trainer leaves them undecayed. Its training defaults are the
Keras scripts' (see `dalkit.presets`, gal2017-mnist): Adam at Keras's lr 1e-3, batch 128, 50 epochs, weight decay
7 / N on the dense layer (Keras's l2(3.5 / N) adds 3.5 / N * |w|^2 to the loss, whose gradient is torch's
weight decay 7 / N; N = labelled images, `weight_decay_per_label`).

`batchbald-cnn`: Kirsch, van Amersfoort & Gal, "BatchBALD", NeurIPS 2019, the MNIST model: two blocks of
[5x5 convolution (32, then 64 channels), dropout, 2x2 max-pooling, ReLU], then a 128-unit layer with dropout and
the 10-way output; dropout 0.5 in all three places, channel-wise (`MCDropout2d`) after the convolutions
(github.com/BlackHC/BatchBALD `src/mnist_model.py` `BayesianNet`, `src/mc_dropout.py` DROPOUT_PROB = 0.5; the same
network as batchbald_redux's `BayesianCNN`). Training defaults: the reference's `optim.Adam(model.parameters())`
(lr 1e-3, no weight decay), batch 64, at most 30 epochs (with early stopping, see the preset).

In both, every dropout layer sits in `head` (dalkit's contract, `dalkit.models.base`): in the BatchBALD network the
first dropout follows the first convolution, so its trunk is that convolution alone and MC-dropout strategies
repeat the rest per sample, as the reference does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dalkit.errors import DalkitError
from dalkit.models.base import Classifier, ModelOutput, TrainDefaults
from dalkit.models.registry import register_model
from dalkit.options import require


class GalCNN(Classifier):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 28,
        filters: int = 32,
        kernel: int = 4,
        pool: int = 2,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        side = (image_size - 2 * (kernel - 1)) // pool
        if side < 1:
            raise DalkitError(
                f"gal-cnn needs images of at least {2 * (kernel - 1) + pool} pixels for kernel {kernel} and pool "
                f"{pool} (got {image_size}); use a larger image size or another model."
            )
        self.num_classes = num_classes
        self.embedding_dim = hidden
        self.pool = pool
        self.conv1 = nn.Conv2d(in_channels, filters, kernel)
        self.conv2 = nn.Conv2d(filters, filters, kernel)
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(filters * side * side, hidden)
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(hidden, num_classes)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return F.max_pool2d(x, self.pool).flatten(1)

    def head(self, z: torch.Tensor) -> ModelOutput:
        embedding = F.relu(self.fc1(self.dropout1(z)))
        return ModelOutput(self.fc2(self.dropout2(embedding)), embedding)

    def no_weight_decay(self) -> set[str]:
        """Parameters left out of weight decay (timm's convention): all but the dense layer's weights."""
        return {name for name, _ in self.named_parameters() if name != "fc1.weight" and not name.startswith("heads.")}


class BatchBALDCNN(Classifier):
    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28, dropout: float = 0.5) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise DalkitError(
                f"batchbald-cnn needs images of at least 16 pixels (got {image_size}); use another model."
            )
        require(0 <= dropout < 1, "batchbald-cnn", "dropout", dropout, "be in [0, 1)", "dropout=0.5")
        self.num_classes = num_classes
        self.embedding_dim = 128
        self.conv1 = nn.Conv2d(in_channels, 32, 5)
        self.conv1_drop = nn.Dropout2d(dropout)
        self.conv2 = nn.Conv2d(32, 64, 5)
        self.conv2_drop = nn.Dropout2d(dropout)
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.fc1_drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(128, num_classes)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def head(self, z: torch.Tensor) -> ModelOutput:
        x = F.relu(F.max_pool2d(self.conv1_drop(z), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        embedding = F.relu(self.fc1_drop(self.fc1(x.flatten(1))))
        return ModelOutput(self.fc2(embedding), embedding)


@register_model(
    "gal-cnn",
    TrainDefaults(
        epochs=50,
        lr=1e-3,
        milestones=(),
        batch_size=128,
        weight_decay=7.0,
        optimizer="adam",
        weight_decay_per_label=True,
    ),
    "Gal et al. 2017's MC-dropout CNN: 2 x conv 4x4/32, pool 2, dropout 0.25, dense 128, dropout 0.5 (Adam)",
)
def gal_cnn(
    num_classes: int,
    in_channels: int = 1,
    image_size: int = 28,
    filters: int = 32,
    kernel: int = 4,
    pool: int = 2,
    hidden: int = 128,
) -> GalCNN:
    require(filters >= 1, "gal-cnn", "filters", filters, "be at least 1", "filters=32")
    require(kernel >= 1, "gal-cnn", "kernel", kernel, "be at least 1", "kernel=4")
    require(pool >= 1, "gal-cnn", "pool", pool, "be at least 1", "pool=2")
    require(hidden >= 1, "gal-cnn", "hidden", hidden, "be at least 1", "hidden=128")
    return GalCNN(num_classes, in_channels, image_size, filters, kernel, pool, hidden)


@register_model(
    "batchbald-cnn",
    TrainDefaults(epochs=30, lr=1e-3, milestones=(), batch_size=64, weight_decay=0.0, optimizer="adam"),
    "BatchBALD 2019's MNIST BNN: [conv 5x5, dropout2d, pool, relu] x 2 (32, 64), dense 128, dropout 0.5 (Adam)",
)
def batchbald_cnn(num_classes: int, in_channels: int = 1, image_size: int = 28, dropout: float = 0.5) -> BatchBALDCNN:
    return BatchBALDCNN(num_classes, in_channels, image_size, dropout)

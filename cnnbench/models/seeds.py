"""The course's own models, written as the lecture slides define them.

Each class keeps the slide's layer names and forward so a student can read the two side by side.
Departures from a slide are stated in the class docstring. Nothing here is trained: weights are
PyTorch's default initialisation, which is all that timing and counting need.

Sources (course slides in the shared seeds folder):
- `LeNet5`: "LeNet (1998)" slide (C1 6@5x5, pooling, C3 16@5x5, pooling, C5 120, F6 84, output 10).
- `MnistCNNBN`: "CNN in PyTorch Example - MNIST" slide (`class CNN`).
- `MnistCNN`: "Network Initialization" / "Network Feedforward" slides (`class MnistCNN`).
- `MnistFCN`: "New Network" / "New feedforward" slides (the fully convolutional `MnistCNN`).
- `InceptionNaive`, `InceptionBottleneck`: "Naive Inception module" and "Inception module -
  Bottleneck layers" slides (256x28x28 input; 854M and 271M conv MACs).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "LeNet5",
    "MnistCNNBN",
    "MnistCNN",
    "MnistFCN",
    "InceptionNaive",
    "InceptionBottleneck",
    "SEED_BUILDERS",
]


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) on a 1x32x32 input, in its usual modern reading.

    C1 conv 5x5 1->6 (28x28) -> tanh -> 2x2 average pool (14x14) -> C3 conv 5x5 6->16 (10x10)
    -> tanh -> 2x2 average pool (5x5) -> C5 400->120 -> tanh -> F6 120->84 -> tanh -> 10.

    Activation: tanh, as the slide says ("Sigmoid/Tanh activation"; the paper's squashing is a
    scaled tanh). Pooling: 2x2 average pooling, stride 2, the paper's subsampling. Departures
    from the paper (and from the slide's per-layer parameter figures), all standard:
    - subsampling has no trainable coefficient and bias (the slide's 12 and 32 parameters),
    - C3 connects every input map to every output map (2,416 parameters, not the slide's
      1,516 from the paper's partial connection table),
    - the output is a linear layer, not Euclidean RBF units.
    C5 is a fully connected 400->120 layer; the slide notes its 5x5 convolution on a 5x5 map
    "is a fully connected layer", with the same 48,120 parameters. Total: 61,706 parameters.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)
        self.s2 = nn.AvgPool2d(kernel_size=2, stride=2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.s4 = nn.AvgPool2d(kernel_size=2, stride=2)
        self.c5 = nn.Linear(16 * 5 * 5, 120)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s2(torch.tanh(self.c1(x)))  # [B, 6, 14, 14]
        x = self.s4(torch.tanh(self.c3(x)))  # [B, 16, 5, 5]
        x = torch.flatten(x, 1)  # [B, 400]
        x = torch.tanh(self.c5(x))
        x = torch.tanh(self.f6(x))
        return self.output(x)


class MnistCNNBN(nn.Module):
    """The slide's `class CNN`: two conv5x5 + BatchNorm + ReLU + max-pool blocks, one linear layer.

    1x28x28 -> 16x14x14 -> 32x7x7 -> 10. Exactly the slide's layers.
    """

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=5, padding=2),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.layer2 = nn.Sequential(
            nn.Conv2d(16, 32, kernel_size=5, padding=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(7 * 7 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer1(x)
        out = self.layer2(out)
        out = out.view(out.size(0), -1)
        return self.fc(out)


class MnistCNN(nn.Module):
    """The slide's `MnistCNN`: conv3x3 'same' 1->32, pool, conv3x3 'same' 32->64, pool, 3136-128-10.

    ReLU after both convolutions and after fc1, none after fc2 (logits), as in the slide's forward.
    """

    def __init__(self):
        super().__init__()
        # input is 1x28x28, so input channels = 1
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding="same")
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding="same")
        # 64 channels, pooled twice: 28 => 14 => 7
        self.last_conv_length = 64 * 7 * 7
        self.fc1 = nn.Linear(self.last_conv_length, 128)
        self.fc2 = nn.Linear(128, 10)
        self.activation = F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.activation(self.conv1(x)))  # [B, 32, 14, 14]
        x = self.pool(self.activation(self.conv2(x)))  # [B, 64, 7, 7]
        x = x.view(-1, self.last_conv_length)  # [B, 3136]
        x = self.activation(self.fc1(x))  # [B, 128]
        return self.fc2(x)  # [B, 10]


class MnistFCN(nn.Module):
    """The slide's fully convolutional `MnistCNN` ("New Network"): no Linear layers.

    conv1 3x3 same 1->32, pool, conv2 3x3 same 32->64, pool, conv3 3x3 valid 64->128 (5x5),
    AdaptiveMaxPool2d(1), conv4 1x1 128->10, flatten. ReLU after conv1-conv3, as on the slide.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding="same")
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding="same")
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, padding="valid")
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        # max-pool the last two dimensions into [B, C, 1, 1]
        self.adaptivepool = nn.AdaptiveMaxPool2d(1)
        self.conv4 = nn.Conv2d(128, 10, kernel_size=1)
        self.activation = F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.activation(self.conv1(x)))  # [B, 32, 14, 14]
        x = self.pool(self.activation(self.conv2(x)))  # [B, 64, 7, 7]
        x = self.activation(self.conv3(x))  # [B, 128, 5, 5]
        x = self.adaptivepool(x)  # [B, 128, 1, 1]
        x = self.conv4(x)  # [B, 10, 1, 1]
        return x.view(x.size(0), -1)  # [B, 10]


def _conv_relu(cin: int, cout: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2), nn.ReLU(inplace=True))


class InceptionNaive(nn.Module):
    """The slides' naive Inception module on a 256x28x28 input.

    Parallel branches, concatenated on channels (128 + 192 + 96 + 256 = 672 output channels):
    1x1 conv/128, 3x3 conv/192 (pad 1), 5x5 conv/96 (pad 2), 3x3 max pool (stride 1, pad 1).
    Each convolution is followed by ReLU, as in the GoogLeNet paper's module (the slides draw
    only the convolutions; ReLU adds no parameters and no MACs).
    """

    def __init__(self, in_channels: int = 256, c1: int = 128, c3: int = 192, c5: int = 96):
        super().__init__()
        self.branch1x1 = _conv_relu(in_channels, c1, 1)
        self.branch3x3 = _conv_relu(in_channels, c3, 3)
        self.branch5x5 = _conv_relu(in_channels, c5, 5)
        self.branch_pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], dim=1)


class InceptionBottleneck(nn.Module):
    """The slides' Inception module with 1x1 bottleneck layers, on a 256x28x28 input.

    Branches: 1x1/128; 1x1/64 -> 3x3/192; 1x1/64 -> 5x5/96; 3x3 max pool -> 1x1/64, concatenated
    on channels (128 + 192 + 96 + 64 = 480). ReLU after every convolution, as in GoogLeNet.
    Its conv MACs are 271M; the slide's "Total: 358M ops" is a known arithmetic slip of the
    cs231n slide it copies (its own per-layer lines add up to 271M).
    """

    def __init__(
        self,
        in_channels: int = 256,
        c1: int = 128,
        r3: int = 64,
        c3: int = 192,
        r5: int = 64,
        c5: int = 96,
        pool_proj: int = 64,
    ):
        super().__init__()
        self.branch1x1 = _conv_relu(in_channels, c1, 1)
        self.branch3x3 = nn.Sequential(_conv_relu(in_channels, r3, 1), _conv_relu(r3, c3, 3))
        self.branch5x5 = nn.Sequential(_conv_relu(in_channels, r5, 1), _conv_relu(r5, c5, 5))
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1), _conv_relu(in_channels, pool_proj, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], dim=1)


# Registry names (see `cnnbench.models.catalog._SEEDS`) -> builders. Builders accept keyword
# arguments from a suite's `model_kwargs`.
SEED_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "mnist_cnn_bn": MnistCNNBN,
    "mnist_cnn": MnistCNN,
    "mnist_fcn": MnistFCN,
    "inception_naive": InceptionNaive,
    "inception_bottleneck": InceptionBottleneck,
}

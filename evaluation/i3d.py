"""The I3D that FVD is computed with (Carreira & Zisserman 2017; Unterthiner et al. 2018): Inception-v1 inflated to
3-D, trained on Kinetics-400, as VideoGPT's `i3d_pretrained_400.pt` holds it (the DeepMind weights converted to
PyTorch). Convolutions and poolings pad the way TensorFlow's "SAME" does, which depends on the input's size, so the
padding is computed in `forward`. Module names follow the published file, so it loads strictly."""

import torch
import torch.nn.functional as F
from torch import nn

CLIP_FRAMES = 16  # FVD's clips: 16 frames ...
CLIP_SIZE = 224  # ... of 224 x 224
CLASSES = 400  # Kinetics-400: FVD compares these logits


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis as (before, after): the output has ceil(size / stride) positions."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):  # F.pad takes the last axis first
        pads += _same_padding(size, k, s)
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """SAME-padded 3-D convolution, then batch norm (eps 1e-5, as the published file's own code) and ReLU; the
    classifier's unit has a bias and neither."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1), classifier: bool = False):
        super().__init__()
        self.kernel, self.stride, self.classifier = tuple(kernel), tuple(stride), classifier
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride, bias=classifier)
        if not classifier:
            self.bn = nn.BatchNorm3d(out_channels, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        return x if self.classifier else F.relu(self.bn(x))


class MaxPoolSame(nn.Module):
    """SAME-padded 3-D max pooling (the padding is zeros, as in the published model's port)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches: 1x1x1; 1x1x1 then 3x3x3; 1x1x1 then 3x3x3; 3x3x3 max pool then 1x1x1. `widths` are the six
    convolutions' output channels in that order; the output has widths[0] + widths[2] + widths[4] + widths[5]."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class I3D(nn.Module):
    """Clips (N, 3, 16, 224, 224) in [-1, 1] -> Kinetics-400 logits (N, 400), averaged over time."""

    def __init__(self):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(1024, CLASSES, classifier=True)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips
        for layer in list(self.children())[:-1]:
            x = layer(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        return self.logits(x).flatten(3).mean(dim=(2, 3))

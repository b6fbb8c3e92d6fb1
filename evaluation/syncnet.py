"""SyncNet (Chung & Zisserman, "Out of time", 2016) as joonson/syncnet_python's `SyncNetModel.S` defines it.

The layer indices of the four `nn.Sequential` stacks (ReLUs and poolings included) give the state-dict keys of
the published `syncnet_v2.model`, so that file loads strictly into `SyncNet()`."""

import torch
from torch import nn


def _conv_block(conv: nn.Module, norm: nn.Module, pool: nn.Module | None = None) -> list[nn.Module]:
    """conv, batch norm, ReLU and an optional pooling: four (or three) slots of the official Sequential."""
    return [conv, norm, nn.ReLU(inplace=True)] + ([pool] if pool is not None else [])


def _embedding_head(width: int) -> nn.Sequential:
    """512 -> 512 -> `width`: the fully connected part of either branch."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, width))


class SyncNet(nn.Module):
    """Audio and lip branches mapping 0.2 s of each into one embedding space (distance = out of sync).

    - audio: MFCC blocks (N, 1, 13, 20) (13 cepstra x 20 steps of 10 ms) -> (N, `embedding_size`)
    - lips: BGR face crops (N, 3, 5, 224, 224), float 0..255, 5 frames at 25 fps -> (N, `embedding_size`)
    """

    def __init__(self, embedding_size: int = 1024):
        super().__init__()
        # Attribute order is the official one: it fixes the state dict's order (and so the test weights' draw).
        self.netcnnaud = nn.Sequential(
            *_conv_block(nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64), nn.MaxPool2d(1, 1)),
            *_conv_block(nn.Conv2d(64, 192, 3, padding=1), nn.BatchNorm2d(192), nn.MaxPool2d(3, stride=(1, 2))),
            *_conv_block(nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384)),
            *_conv_block(nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256)),
            *_conv_block(nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256), nn.MaxPool2d(3, stride=2)),
            # 13 x 20 has become 5 x 4 here: this kernel collapses it to one position
            nn.Conv2d(256, 512, (5, 4)), nn.BatchNorm2d(512), nn.ReLU(),
        )
        self.netfcaud = _embedding_head(embedding_size)
        self.netfclip = _embedding_head(embedding_size)
        self.netcnnlip = nn.Sequential(
            # the 5 frames are consumed by the first kernel; every later layer is per-frame (temporal size 1)
            *_conv_block(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), nn.BatchNorm3d(96), nn.MaxPool3d((1, 3, 3), (1, 2, 2))),
            *_conv_block(
                nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2), padding=(0, 1, 1)),
            ),
            *_conv_block(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_block(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_block(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.MaxPool3d((1, 3, 3), (1, 2, 2))),
            *_conv_block(nn.Conv3d(256, 512, (1, 6, 6)), nn.BatchNorm3d(512)),
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC blocks -> (N, embedding_size) audio embeddings."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lipfeat(self, lips: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR 0..255 -> (N, 512) lip features before the fully connected head."""
        return self.netcnnlip(lips).flatten(1)

    def forward_lip(self, lips: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR 0..255 -> (N, embedding_size) lip embeddings."""
        return self.netfclip(self.forward_lipfeat(lips))

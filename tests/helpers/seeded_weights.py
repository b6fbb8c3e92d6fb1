"""Seeded random weights for networks whose published weights cannot be downloaded here: the recipe of
../shared/golden/evaluation/README.md, which tests/fixtures/make_fid_fixture.py also applies to pytorch-fid's network."""

import math

import numpy as np
import torch


def draw_weights(network: torch.nn.Module, seed: int, order: list[str] | None = None) -> torch.nn.Module:
    """The golden README's recipe: walk the state dict in order (or the keys in `order`: another implementation's
    state dict order), filling each tensor from one generator."""
    generator = torch.Generator().manual_seed(seed)
    state = network.state_dict()
    with torch.no_grad():
        for name in order or list(state):
            tensor = state[name]
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.dim() == 1:
                noise = 0.1 * torch.randn(tensor.shape, generator=generator)
                tensor.copy_(1.0 + noise if name.endswith("weight") else noise)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(tensor[0].numel()))
    return network.eval()


def signal_keeping_weights(network: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights under which a deep ReLU network still sees its input (He-scaled convolutions, neutral batch
    norms): the recipe above shrinks the signal layer by layer until every image gives almost the same features,
    which would leave nothing for a test of "FID grows with noise" to measure."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith(("running_var", "bn.weight")):
                tensor.fill_(1.0)
            elif tensor.dim() == 1:
                tensor.zero_()
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * math.sqrt(2 / tensor[0].numel()))
    return network.eval()


def relative_l2(actual, expected) -> float:
    """|actual - expected| / |expected| (L2 over every element, in float64): how such references are compared."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))

"""ReferenceNet: diffusers' SD1.5 `UNet2DConditionModel`, read through forward hooks.

Each transformer block's `norm2` output (the input of its cross-attention) is the reference
bank entry for the denoising-UNet block at the same module path."""

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock


def reference_net_from_config(config: dict | str) -> UNet2DConditionModel:
    """The published ReferenceNet: the SD1.5 UNet without its final GroupNorm (and so without
    the activation after it); `reference_net.bin` has no `conv_norm_out` keys."""
    if not isinstance(config, dict):
        config = UNet2DConditionModel.load_config(str(config))
    reference_net = UNet2DConditionModel.from_config(config)
    reference_net.conv_norm_out = None
    reference_net.conv_act = None
    return reference_net


class ReferenceBankRecorder:
    """Records every transformer block's `norm2` output while `reference_net` runs.

    with ReferenceBankRecorder(reference_net) as recorder:
        reference_net(latent, 0, encoder_hidden_states=zeros)
    recorder.bank  # {block path: (batch, tokens, channels)}
    """

    def __init__(self, reference_net: UNet2DConditionModel):
        self.reference_net = reference_net
        self.bank: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> "ReferenceBankRecorder":
        for path, module in self.reference_net.named_modules():
            if isinstance(module, BasicTransformerBlock):
                self._handles.append(module.norm2.register_forward_hook(self._recorder(path)))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _recorder(self, path):
        def record(module, inputs, output):
            self.bank[path] = output

        return record


def compute_reference_bank(reference_net: UNet2DConditionModel, reference_latent: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reference latent (batch, 4, h, w) -> reference bank {block path: (batch, h*w tokens, channels)}:
    one forward at timestep 0 with a zero text context, as the published pipeline runs it."""
    context = reference_latent.new_zeros(reference_latent.shape[0], 1, reference_net.config.cross_attention_dim)
    with ReferenceBankRecorder(reference_net) as recorder:
        reference_net(reference_latent, 0, encoder_hidden_states=context)
    return recorder.bank

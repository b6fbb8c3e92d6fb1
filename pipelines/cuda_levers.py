"""Speed levers of the denoising UNet on CUDA that leave the video as it is (fp32 within 1e-4 of the CPU's, tested by
tests/test_gpu.py). Which are on by default comes from the GPU report (scripts/benchmark_gpu.py, docs/benchmarks/):
on an H200 in fp16 none paid (seconds per 24-frame window call: eager 0.248, cudnn.benchmark 0.249, channels_last
0.252, flash attention 0.277, memory-efficient 0.321, cuDNN attention 0.250, math 1.03; two and four windows per
call 0.243 and 0.244 a window, within eager's own spread), so the defaults only keep fp32 convolutions strict
(PyTorch's TF32 convolutions moved an fp32 video by 8.6e-4 there)."""

import contextlib

import torch

CUDA_DEFAULTS = dict(cudnn_benchmark=False, channels_last=False, sdpa_backend=None, strict_fp32=True)
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")


@contextlib.contextmanager
def unet_levers(unet, cudnn_benchmark: bool = False, channels_last: bool = False, sdpa_backend: str | None = None,
                strict_fp32: bool = True):
    """The levers set for the block and undone after it.

    cudnn_benchmark: cuDNN times its convolution algorithms once per shape (every window has one shape).
    channels_last: the UNet's convolution weights in NHWC. sdpa_backend: one of SDPA_BACKENDS for every attention.
    strict_fp32: fp32 convolutions without TF32, as the CPU computes them (False: PyTorch's default, TF32)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    try:
        attention = sdpa_kernel([getattr(SDPBackend, sdpa_backend)]) if sdpa_backend else contextlib.nullcontext()
        with convolution_precision(strict_fp32), attention:
            yield
    finally:
        torch.backends.cudnn.benchmark = previous
        if channels_last:
            unet.to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def convolution_precision(strict_fp32: bool = True):
    """fp32 convolutions without TF32 for the block (strict_fp32), else PyTorch's default; undone after it. The VAE
    decoder runs under it too: it decodes outside the denoising loop, where PyTorch's TF32 default would otherwise
    move an fp32 video."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = not strict_fp32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def device_levers(device: torch.device, unet, levers: dict = CUDA_DEFAULTS) -> contextlib.AbstractContextManager:
    """`levers` (unet_levers' settings) on CUDA; nothing elsewhere."""
    return unet_levers(unet, **levers) if device.type == "cuda" else contextlib.nullcontext()

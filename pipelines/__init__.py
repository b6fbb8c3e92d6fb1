"""The inference side: the diffusion pipeline and its helpers (audio, keypoints and motion, video, faces,
weights, resumable runs). `from pipelines import VExpressPipeline` is the published import path. The training
side lives in pipelines/training/, which nothing here imports."""

import logging

# diffusers imports bitsandbytes when installed (8-bit AdamW), whose CPU backend then warns about a 4-bit kernel
# this project never uses.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from .pipeline_v_express import VExpressPipeline  # noqa: E402

__all__ = ["VExpressPipeline"]

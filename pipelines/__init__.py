"""The diffusion pipeline and its helpers: audio, keypoints, video, faces, weights, training data and steps."""

import logging

# diffusers imports bitsandbytes when installed (8-bit AdamW), whose CPU backend then warns about a 4-bit kernel
# this project never uses.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

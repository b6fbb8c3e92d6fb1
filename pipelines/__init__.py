"""The diffusion pipeline and what it computes with: context windows, speech encoding, the flicker filter, loading
the networks, the config and the CUDA levers. `from pipelines import VExpressPipeline` is the published import path.

The layers, each importing only those before it (tests/test_layers.py walks the imports): modules/ (the networks),
pipelines/, media/ (audio, video, faces), motion/ (keypoints, retargets, head motion, plans), then training/,
evaluation/ and app/ (flags, requests, generation, resume, batch, web UI), which do not import one another."""

from modules.quiet import quiet_library_logs

quiet_library_logs()  # before diffusers loads: no library log lines on the user's terminal

from .pipeline_v_express import VExpressPipeline  # noqa: E402

__all__ = ["VExpressPipeline"]

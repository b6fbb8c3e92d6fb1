"""The inference side: the diffusion pipeline and its helpers (audio, keypoints and motion, video, faces,
weights, resumable runs). `from pipelines import VExpressPipeline` is the published import path. The training
side lives in pipelines/training/, which nothing here imports."""

from modules.quiet import quiet_library_logs

quiet_library_logs()  # before diffusers loads: no library log lines on the user's terminal

from .pipeline_v_express import VExpressPipeline  # noqa: E402

__all__ = ["VExpressPipeline"]

"""VExpressPipeline: reference image + audio + keypoint images -> talking-head video."""

import time

import torch
import torch.distributed as dist
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from modules.reference_net import compute_reference_bank
from modules.unet_3d import fold_frames, unfold_frames

from .audio import audio_vectors_per_frame
from .context import context_windows

GUIDER_FRAMES_PER_FORWARD = 16


def published_noise_generator(seed: int, audio_encoder) -> torch.Generator:
    """A CPU generator in the state the published code's global generator was in when it drew the initial
    latents: its transformers version drew one uniform per wav2vec2 encoder layer (LayerDrop) first."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(audio_encoder.config.num_hidden_layers):
        torch.rand([], generator=generator)
    return generator


class VExpressPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "audio_encoder->audio_projection->v_kps_guider->reference_net->denoising_unet->vae"

    def __init__(self, vae, reference_net, denoising_unet, v_kps_guider, audio_processor, audio_encoder, audio_projection, scheduler):
        super().__init__()
        self.register_modules(
            vae=vae, reference_net=reference_net, denoising_unet=denoising_unet, v_kps_guider=v_kps_guider,
            audio_processor=audio_processor, audio_encoder=audio_encoder, audio_projection=audio_projection, scheduler=scheduler,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.reference_image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True)
        self.kps_image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False)

    # Conditions, each computed once per video.

    def encode_reference(self, reference_image, width, height, device, dtype) -> torch.Tensor:
        """PIL image -> VAE latent mean x scaling factor, (1, 4, height/8, width/8)."""
        pixels = self.reference_image_processor.preprocess(reference_image, height=height, width=width)
        latent = self.vae.encode(pixels.to(device, dtype)).latent_dist.mean
        return latent * self.vae.config.scaling_factor

    def encode_audio(self, audio_waveform, video_length, num_pad_audio_frames, device, dtype) -> torch.Tensor:
        """16 kHz mono waveform (samples,) -> audio tokens (video_length, queries, dim)."""
        sampling_rate = self.audio_processor.sampling_rate
        inputs = self.audio_processor(torch.as_tensor(audio_waveform).float().cpu().numpy(), sampling_rate=sampling_rate, return_tensors="pt")
        hidden_states = self.audio_encoder(inputs.input_values.to(device, self.audio_encoder.dtype)).last_hidden_state[0]
        vectors = audio_vectors_per_frame(hidden_states, video_length, num_pad_audio_frames)
        return self.audio_projection(vectors.to(dtype))

    def encode_kps(self, kps_images, width, height, device, dtype) -> torch.Tensor:
        """L PIL keypoint images -> kps features (1, C, L, height/8, width/8)."""
        pixels = self.kps_image_processor.preprocess(kps_images, height=height, width=width)  # (L, 3, H, W) in [0, 1]
        chunks = [
            self.v_kps_guider(pixels[i:i + GUIDER_FRAMES_PER_FORWARD].to(device, dtype).transpose(0, 1)[None])
            for i in range(0, len(pixels), GUIDER_FRAMES_PER_FORWARD)
        ]
        return torch.cat(chunks, dim=2)

    def decode_latents(self, latents, batch_frames: int) -> torch.Tensor:
        """(1, 4, L, h, w) -> video (1, 3, L, H, W) float32 in [0, 1] on the CPU, `batch_frames` frames per VAE call."""
        frames = fold_frames(latents / self.vae.config.scaling_factor)
        device = self._execution_device
        starts = range(0, len(frames), batch_frames)
        decoded = [
            (self.vae.decode(frames[i:i + batch_frames].to(device)).sample / 2 + 0.5).clamp(0, 1).float().cpu()
            for i in tqdm(starts, desc="decoding", unit="batch", leave=False, disable=len(starts) < 2)
        ]
        return unfold_frames(torch.cat(decoded), latents.shape[2])

    def _offload(self, *names):
        for name in names:
            getattr(self, name).to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # Denoising.

    def _guided_prediction(self, latents, t, window, audio_tokens, kps_features, reference_kv, guidance_scale, weights, device):
        window_latents = latents[:, :, window.start:window.stop].to(device)
        window_kps = kps_features[:, :, window.start:window.stop].to(device)
        window_audio = audio_tokens[window.start:window.stop].to(device)
        reference_weight, audio_weight = weights
        if guidance_scale <= 1.0:
            return self.denoising_unet(window_latents, t, window_audio, window_kps, reference_kv, reference_weight, audio_weight)
        prediction = self.denoising_unet(
            torch.cat([window_latents] * 2), t, window_audio, window_kps, reference_kv, reference_weight, audio_weight,
            num_unconditional=1,
        )
        unconditional, conditional = prediction.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def _averaged_prediction(self, latents, t, windows, progress, distributed_state, **conditions) -> torch.Tensor:
        """Each frame's guided prediction averaged over the windows that contain it. With several processes
        each computes every n-th window; the predictions are exchanged exactly (the others add zeros) and
        summed in window order, so the result is the one a single process gets."""
        rank, world = (distributed_state.process_index, distributed_state.num_processes) if distributed_state else (0, 1)
        predictions = [None] * len(windows)
        for i in range(rank, len(windows), world):
            predictions[i] = self._guided_prediction(latents, t, windows[i], **conditions)
            progress.update()
        if world > 1:
            gathered = torch.zeros((len(windows),) + predictions[rank].shape, dtype=predictions[rank].dtype, device=predictions[rank].device)
            for i in range(rank, len(windows), world):
                gathered[i] = predictions[i]
            dist.all_reduce(gathered)
            predictions = list(gathered)
        total = torch.zeros_like(latents)
        counts = torch.zeros(latents.shape[2], dtype=latents.dtype, device=latents.device)
        for window, prediction in zip(windows, predictions):
            total[:, :, window.start:window.stop] += prediction.to(total.device)
            counts[window.start:window.stop] += 1
        return total / counts[:, None, None]

    @torch.no_grad()
    def __call__(
        self,
        reference_image,
        kps_images,
        audio_waveform,
        width: int,
        height: int,
        video_length: int,
        num_inference_steps: int,
        guidance_scale: float,
        context_frames: int = 24,
        context_overlap: int = 4,
        reference_attention_weight: float = 1.0,
        audio_attention_weight: float = 1.0,
        num_pad_audio_frames: int = 2,
        generator: torch.Generator | None = None,
        save_gpu_memory: bool = False,
        latents: torch.Tensor | None = None,
        decode_batch_frames: int = 8,
        distributed_state=None,
        timings: dict | None = None,
    ) -> torch.Tensor:
        """Returns the video (1, 3, video_length, height, width), float32 in [0, 1], on the CPU.

        reference_image: PIL image; kps_images: `video_length` PIL keypoint images; audio_waveform: 16 kHz mono
        (samples,). `latents`: ready-made initial noise (1, 4, L, h, w) instead of drawing it from `generator`.
        `save_gpu_memory`: networks leave the device as soon as their part is done, latents stay on the CPU
        between windows, and frames are decoded one at a time. `distributed_state`: an accelerate
        `PartialState` to split each step's windows across processes. `timings`: filled with seconds per phase.
        """
        if len(kps_images) != video_length:
            raise ValueError(f"{len(kps_images)} keypoint images for a video of {video_length} frames")
        device, dtype = self._execution_device, self.denoising_unet.dtype
        timings = {} if timings is None else timings
        clock = _PhaseClock(timings, device)

        reference_latent = self.encode_reference(reference_image, width, height, device, dtype)
        reference_kv = self.denoising_unet.project_reference_bank(compute_reference_bank(self.reference_net, reference_latent))
        clock.lap("reference")
        audio_tokens = self.encode_audio(audio_waveform, video_length, num_pad_audio_frames, device, dtype)
        clock.lap("audio")
        kps_features = self.encode_kps(kps_images, width, height, device, dtype)
        clock.lap("keypoints")
        latent_device = torch.device("cpu") if save_gpu_memory else device
        if save_gpu_memory:
            self._offload("reference_net", "audio_encoder", "audio_projection", "v_kps_guider")
            audio_tokens, kps_features = audio_tokens.cpu(), kps_features.cpu()

        shape = (1, self.denoising_unet.config.in_channels, video_length, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=dtype)
        latents = (latents.to(latent_device, dtype)) * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        windows = context_windows(video_length, context_frames, context_overlap)
        conditions = dict(
            audio_tokens=audio_tokens, kps_features=kps_features, reference_kv=reference_kv, guidance_scale=guidance_scale,
            weights=(reference_attention_weight, audio_attention_weight), device=device,
        )
        with self.progress_bar(total=len(self.scheduler.timesteps) * len(windows)) as progress:
            progress.set_description("denoising")
            for t in self.scheduler.timesteps:
                prediction = self._averaged_prediction(latents, t, windows, progress, distributed_state, **conditions)
                latents = self.scheduler.step(prediction, t.to(latent_device), latents, eta=0.0).prev_sample
        clock.lap("denoising")

        video = self.decode_latents(latents, 1 if save_gpu_memory else decode_batch_frames)
        clock.lap("decoding")
        return video


class _PhaseClock:
    """Seconds per phase (accelerator work finished before each reading)."""

    def __init__(self, timings: dict, device: torch.device):
        self.timings, self.device = timings, device
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self._last
        self._last = now

"""VExpressPipeline: reference image + audio + keypoint images -> talking-head video.

`pipe(reference_image, kps_images, audio_waveform, width, height, video_length, num_inference_steps,
guidance_scale, ...)` keeps the published signature and returns the whole video tensor. Long videos stream
instead: `output_type="latent"` returns only the latents, and `stream_frames(latents)` decodes, flicker-filters
and converts them a batch at a time. Keypoint images and V-Kps features are made per context window, as the
windows are denoised, so only the latents and the audio tokens are as large as the video."""

import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from modules.reference_net import compute_reference_bank
from modules.unet_3d import DeepFeatureCache, fold_frames
from modules.upsampling import use_phase_upsampling

from pipelines.speech import audio_vectors_per_frame, encode_speech
from pipelines.context import context_windows
from pipelines.cuda_levers import CUDA_DEFAULTS, convolution_precision, device_levers
from pipelines.flicker_filter import FlickerFilter

AUDIO_PROJECTION_FRAMES = 1024  # frames per Audio Projection call: bounds its (frames, 10, 768) input
STEP_FRAMES = 64  # frames per DDIM step: bounds the step's temporaries
MAX_CONTEXT_FRAMES = 32  # the motion modules' temporal position encoding covers this many frames
# The multistep solvers' memory of earlier steps: what a resumed run must restore to continue exactly.
SCHEDULER_HISTORY = ("model_outputs", "timestep_list", "last_sample", "lower_order_nums", "this_order", "_step_index", "_begin_index")


def published_noise_generator(seed: int, audio_encoder) -> torch.Generator:
    """A CPU generator in the state the published code's global generator was in when it drew the initial
    latents: its transformers version drew one uniform per wav2vec2 encoder layer (LayerDrop) first."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(audio_encoder.config.num_hidden_layers):
        torch.rand([], generator=generator)
    return generator


@dataclass
class DenoisingState:
    """Where a run stands after `step` denoising steps: what a resumed run continues from."""

    step: int
    latents: torch.Tensor  # (1, 4, L, h, w)
    scheduler: dict = field(default_factory=dict)  # SCHEDULER_HISTORY attributes of the scheduler


@dataclass
class WindowConditions:
    """What every batch of context windows is denoised with: the video's audio tokens (L, tokens, dim) and keypoint
    images (drawn per window), the reference's keys and values, and the guidance and attention weights."""

    audio_tokens: torch.Tensor
    kps_images: Sequence
    width: int
    height: int
    reference_kv: dict[str, tuple[torch.Tensor, torch.Tensor]]
    guidance_scale: float
    reference_attention_weight: float
    audio_attention_weight: float


@dataclass
class CachedFeatures:
    """DeepCache: a batch of windows' deep UNet features from its last full call, and whether that call was guided."""

    features: torch.Tensor | None = None
    guided: bool = False


@dataclass
class VExpressPipelineOutput(BaseOutput):
    """`frames`: the video (1, 3, L, H, W) float32 in [0, 1] on the CPU, or the final latents (1, 4, L, h, w) with
    output_type="latent"; `timings`: seconds per phase; `unet_calls`: denoising-UNet calls made."""

    frames: torch.Tensor
    timings: dict[str, float]
    unet_calls: int


class VExpressPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "audio_encoder->audio_projection->v_kps_guider->reference_net->denoising_unet->vae"

    def __init__(self, vae, reference_net, denoising_unet, v_kps_guider, audio_processor, audio_encoder, audio_projection, scheduler):
        super().__init__()
        self.register_modules(
            vae=vae, reference_net=reference_net, denoising_unet=denoising_unet, v_kps_guider=v_kps_guider,
            audio_processor=audio_processor, audio_encoder=audio_encoder, audio_projection=audio_projection, scheduler=scheduler,
        )
        # The VAE decoder's up-samplers without their up-sampled tensors: the same sums regrouped, decodes 1.11x faster
        # on the CPU and 1.24x on an H200 (modules/upsampling.py). The denoising UNet's measured no gain: diffusers' own.
        use_phase_upsampling(vae)
        self.cuda_levers = dict(CUDA_DEFAULTS)  # unet_levers' settings on CUDA (pipelines/cuda_levers.py)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.reference_image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True)
        self.kps_image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False)

    # 1. Inputs.

    def check_inputs(
        self, *, kps_images, audio_waveform, width, height, video_length, num_inference_steps, guidance_scale, strength,
        num_images_per_prompt, output_type, context_schedule, context_frames, context_overlap, num_pad_audio_frames,
        guidance_interval, cache_interval, context_batch_size, resume_from, mouth_weights=None,
    ) -> None:
        """A ValueError naming the argument, before any network runs."""
        problems = []
        if width <= 0 or height <= 0 or width % self.vae_scale_factor or height % self.vae_scale_factor:
            problems.append(f"width and height must be positive multiples of {self.vae_scale_factor}, got {width}x{height}")
        if video_length < 1 or len(kps_images) != video_length:
            problems.append(f"{len(kps_images)} keypoint images for a video of {video_length} frames")
        if mouth_weights is not None and tuple(mouth_weights.shape) != (video_length,):
            problems.append(f"mouth_weights: {tuple(mouth_weights.shape)} weights for a video of {video_length} frames")
        if len(torch.as_tensor(audio_waveform).reshape(-1)) == 0:
            problems.append("the audio waveform is empty")
        if num_inference_steps < 1 or not 0 < strength <= 1 or not np.isfinite(guidance_scale):
            problems.append(f"num_inference_steps {num_inference_steps}, strength {strength}, guidance_scale {guidance_scale}")
        if num_images_per_prompt != 1:
            problems.append("num_images_per_prompt must be 1 (one video per call)")
        if output_type not in ("tensor", "latent"):
            problems.append(f"output_type must be 'tensor' or 'latent', got {output_type!r}")
        if context_schedule != "uniform":
            problems.append(f"context_schedule must be 'uniform', got {context_schedule!r}")
        if not 1 <= context_frames <= MAX_CONTEXT_FRAMES or not 0 <= context_overlap < context_frames:
            problems.append(f"context_frames {context_frames} (1..{MAX_CONTEXT_FRAMES}) and context_overlap {context_overlap} (0..frames - 1)")
        if not 0 <= num_pad_audio_frames <= 2:
            problems.append(f"num_pad_audio_frames must be 0, 1 or 2 (the Audio Projection takes 10 vectors), got {num_pad_audio_frames}")
        start, end = guidance_interval
        if not 0 <= start < end <= 1:
            problems.append(f"guidance_interval must satisfy 0 <= start < end <= 1, got {guidance_interval}")
        if cache_interval < 1 or context_batch_size < 1:
            problems.append(f"cache_interval ({cache_interval}) and context_batch_size ({context_batch_size}) must be at least 1")
        if resume_from is not None and resume_from.latents.shape[2] != video_length:
            problems.append(f"resume_from holds latents of {resume_from.latents.shape[2]} frames for a video of {video_length}")
        if problems:
            raise ValueError("; ".join(problems))

    # 2. Conditions computed once per video.

    def encode_reference(self, reference_image, width, height) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """PIL image -> each transformer block's reference-attention keys and values (batch 1): the VAE latent mean
        x scaling factor through the ReferenceNet, its bank projected once for every frame and step."""
        device, dtype = self._execution_device, self.denoising_unet.dtype
        pixels = self.reference_image_processor.preprocess(reference_image, height=height, width=width)
        latent = self.vae.encode(pixels.to(device, dtype)).latent_dist.mean * self.vae.config.scaling_factor
        return self.denoising_unet.project_reference_bank(compute_reference_bank(self.reference_net, latent))

    def encode_audio(self, audio_waveform, video_length, num_pad_audio_frames) -> torch.Tensor:
        """16 kHz mono waveform (samples,) -> audio tokens (video_length, queries, dim)."""
        device, dtype = self._execution_device, self.denoising_unet.dtype
        sampling_rate = self.audio_processor.sampling_rate
        inputs = self.audio_processor(torch.as_tensor(audio_waveform).float().cpu().numpy(), sampling_rate=sampling_rate, return_tensors="pt")
        hidden_states = encode_speech(self.audio_encoder, inputs.input_values.to(device, self.audio_encoder.dtype), sampling_rate=sampling_rate)[0]
        vectors = audio_vectors_per_frame(hidden_states, video_length, num_pad_audio_frames)  # a view: nothing copied yet
        return torch.cat([
            self.audio_projection(vectors[i:i + AUDIO_PROJECTION_FRAMES].to(dtype))
            for i in range(0, video_length, AUDIO_PROJECTION_FRAMES)
        ])

    # 3. Latents.

    def prepare_latents(self, video_length, height, width, generator, latents=None, device=None, mouth_weights=None) -> torch.Tensor:
        """(1, 4, L, h, w): drawn on the CPU from `generator` (the published recipe), or the given ones, x init_noise_sigma;
        with `mouth_weights`, each resting run drawn towards its middle frame's noise (`rest_noise`). Drawn and mixed
        in float32 whatever the networks' dtype: PyTorch draws half-precision normals by another path in some
        versions and sizes, which gave fp16 and bf16 videos other noise than fp32's (docs/benchmarks/)."""
        dtype = self.denoising_unet.dtype
        shape = (1, self.denoising_unet.config.in_channels, video_length, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        elif latents.shape != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}; expected {shape}")
        if mouth_weights is not None:
            latents = rest_noise(latents.float(), mouth_weights)
        return latents.to(device or self._execution_device, dtype) * self.scheduler.init_noise_sigma

    def denoising_state(self, step: int, latents: torch.Tensor) -> DenoisingState:
        """A snapshot to resume from after `step` steps (the scheduler's history included)."""
        history = {name: getattr(self.scheduler, name) for name in SCHEDULER_HISTORY if hasattr(self.scheduler, name)}
        return DenoisingState(step, latents, {name: list(value) if isinstance(value, list) else value for name, value in history.items()})

    # 4. Denoising: the keypoint features made per context window, the UNet on batches of windows.

    def encode_kps(self, kps_images: Sequence, frames: range, width: int, height: int) -> torch.Tensor:
        """The keypoint images of `frames` (PIL images, or (H, W, 3) uint8 arrays) -> kps features (1, C, frames, h, w)."""
        images = [kps_images[i] for i in frames]
        if all(isinstance(image, np.ndarray) and image.shape == (height, width, 3) and image.dtype == np.uint8 for image in images):
            # Already drawn at the right size: only uint8 crosses to the device, scaled there as preprocess would.
            pixels = torch.from_numpy(np.stack(images)).to(self._execution_device).permute(0, 3, 1, 2).float() / 255
        else:
            pixels = self.kps_image_processor.preprocess(images, height=height, width=width).to(self._execution_device)
        return self.v_kps_guider(pixels.to(self.denoising_unet.dtype).transpose(0, 1)[None])

    def _predict(self, latents, t, windows, conditions: WindowConditions, guided: bool, cache: CachedFeatures | None, reuse: bool) -> torch.Tensor:
        """The (guided) v-prediction of a batch of windows in one UNet call -> (len(windows), 4, frames, h, w).
        `cache` (DeepCache): this batch's last full call; with `reuse` the UNet runs only its shallow branch on its
        features (the conditional half of guided features serves an unguided call)."""
        device = self._execution_device
        window_latents = torch.cat([latents[:, :, w.start:w.stop] for w in windows]).to(device)
        window_latents = self.scheduler.scale_model_input(window_latents, t)
        deep_cache = None
        if cache is not None:
            if reuse and cache.features is not None and (cache.guided or not guided):
                deep_cache = DeepFeatureCache((cache.features if cache.guided == guided else cache.features.chunk(2)[1]).to(device), reuse=True)
            else:
                deep_cache = DeepFeatureCache()
        unet_kwargs = dict(
            audio_tokens=torch.cat([conditions.audio_tokens[w.start:w.stop] for w in windows]).to(device),
            kps_features=torch.cat([self.encode_kps(conditions.kps_images, w, conditions.width, conditions.height) for w in windows]),
            reference_kv=conditions.reference_kv, reference_attention_weight=conditions.reference_attention_weight,
            audio_attention_weight=conditions.audio_attention_weight, deep_cache=deep_cache,
        )
        if guided:
            unconditional, conditional = self.denoising_unet(
                torch.cat([window_latents] * 2), t, num_unconditional=len(windows), **unet_kwargs
            ).chunk(2)
            prediction = unconditional + conditions.guidance_scale * (conditional - unconditional)
        else:
            prediction = self.denoising_unet(window_latents, t, **unet_kwargs)
        if deep_cache is not None and not deep_cache.reuse:
            cache.features, cache.guided = deep_cache.features.to(latents.device), guided
        return prediction

    def _averaged_prediction(self, latents, t, batches, conditions, guided, caches, reuse, progress, distributed_state) -> tuple[torch.Tensor, int]:
        """Each frame's prediction averaged over the windows that contain it, and the UNet calls made. With several
        processes each computes every n-th batch of windows; the predictions are exchanged exactly (the others add
        zeros) and summed in window order, so the result is the one a single process gets."""
        rank, world = (distributed_state.process_index, distributed_state.num_processes) if distributed_state else (0, 1)
        predictions = [None] * len(batches)
        for i in range(rank, len(batches), world):
            cache = None if caches is None else caches.setdefault(i, CachedFeatures())
            predictions[i] = self._predict(latents, t, batches[i], conditions, guided, cache, reuse)
            progress.update(len(batches[i]))
        if world > 1:
            like = predictions[rank]
            gathered = torch.zeros((len(batches),) + like.shape, dtype=like.dtype, device=like.device)
            for i in range(rank, len(batches), world):
                gathered[i] = predictions[i]
            dist.all_reduce(gathered)
            predictions = list(gathered)
        total = torch.zeros_like(latents)
        counts = torch.zeros(latents.shape[2], dtype=latents.dtype, device=latents.device)
        for batch, prediction in zip(batches, predictions):
            for window, window_prediction in zip(batch, prediction.to(latents.device).split(1)):
                total[:, :, window.start:window.stop] += window_prediction
                counts[window.start:window.stop] += 1
        return total.div_(counts[:, None, None]), len(range(rank, len(batches), world))

    def _scheduler_step(self, prediction, t, latents, extra_step_kwargs) -> torch.Tensor:
        """The scheduler's step. Noise-free DDIM is elementwise, so it steps a few frames at a time, in place: a long
        video then needs no video-sized temporaries. The multistep solvers keep a history, and thresholding takes a
        quantile over the whole sample: those step the whole tensor."""
        if not isinstance(self.scheduler, DDIMScheduler) or extra_step_kwargs.get("eta") or self.scheduler.config.thresholding:
            return self.scheduler.step(prediction, t, latents, **extra_step_kwargs).prev_sample
        for start in range(0, latents.shape[2], STEP_FRAMES):
            frames = slice(start, start + STEP_FRAMES)
            latents[:, :, frames] = self.scheduler.step(prediction[:, :, frames], t, latents[:, :, frames], **extra_step_kwargs).prev_sample
        return latents

    # 5. Decoding.

    @torch.no_grad()
    def decode_latents(self, latents, batch_frames: int | None = None) -> torch.Tensor:
        """(1, 4, L, h, w) -> video (1, 3, L, H, W) float32 in [0, 1] on the CPU (the published output)."""
        decoded = [frames.float().cpu() for frames in self._decode(latents, batch_frames)]
        return torch.cat(decoded).transpose(0, 1)[None]

    @torch.no_grad()
    def stream_frames(self, latents, batch_frames: int | None = None, flicker_filter: bool = True) -> Iterator[np.ndarray]:
        """(1, 4, L, h, w) -> the L frames, each (H, W, 3) uint8, a decoded batch at a time: x 255 truncated and
        flicker-filtered on the device the VAE runs on. The same frames as filtering and converting
        `decode_latents(latents)`; nothing the size of the video is ever held."""
        frame_filter = FlickerFilter(latents.shape[2]) if flicker_filter else None
        for frames in self._decode(latents, batch_frames):
            frames = (frames.float() * 255).to(torch.uint8)
            if frame_filter is not None:
                frames = frame_filter.push(frames)
            yield from frames.permute(0, 2, 3, 1).cpu().numpy()

    def _decode(self, latents, batch_frames):
        """Batches of decoded frames (n, 3, H, W) in [0, 1], in the VAE's dtype on its device."""
        device = self._execution_device
        frames = fold_frames(latents)  # a view for a batch of one video: no copy of the latents
        batch_frames = batch_frames or self.decode_batch_size(frames.shape[-2:])
        starts = self.progress_bar(range(0, len(frames), batch_frames))
        starts.set_description("decoding")
        for start in starts:
            batch = frames[start:start + batch_frames].to(device, self.vae.dtype) / self.vae.config.scaling_factor
            with convolution_precision(self.cuda_levers.get("strict_fp32", True)):  # not held across the yield: the caller's code runs there
                decoded = self.vae.decode(batch).sample
            yield (decoded / 2 + 0.5).clamp(0, 1)

    def decode_batch_size(self, latent_size, limit: int = 16) -> int:
        """Frames per VAE decode. On the CPU one: measured fastest per frame (0.57 s against 0.67 s for 16 frames of
        128x128 with the SD VAE) and the least memory. On an accelerator, what fits in a quarter of its free memory,
        at most `limit`: a decode peaks at about 34 bytes per output pixel and `block_out_channels[0]` in float32."""
        if self._execution_device.type == "cpu":
            return 1
        pixels = latent_size[0] * latent_size[1] * self.vae_scale_factor**2
        per_frame = pixels * self.vae.config.block_out_channels[0] * 34 * self.vae.dtype.itemsize / 4
        return int(max(1, min(limit, _free_memory(self._execution_device) / 4 // per_frame)))

    def _offload(self, *names):
        for name in names:
            getattr(self, name).to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

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
        strength: float = 1.0,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        output_type: str = "tensor",
        return_dict: bool = True,
        callback: Callable | None = None,
        callback_steps: int = 1,
        context_schedule: str = "uniform",
        context_frames: int = 24,
        context_overlap: int = 4,
        reference_attention_weight: float = 1.0,
        audio_attention_weight: float = 1.0,
        num_pad_audio_frames: int = 2,
        do_multi_devices_inference: bool = False,
        save_gpu_memory: bool = False,
        *,
        latents: torch.Tensor | None = None,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
        cache_interval: int = 1,
        context_batch_size: int = 1,
        decode_batch_frames: int | None = None,
        resume_from: DenoisingState | None = None,
        callback_on_step_end: Callable | None = None,
        return_output: bool = False,
        mouth_weights: torch.Tensor | None = None,
    ) -> torch.Tensor | VExpressPipelineOutput:
        """The published arguments, in their order, then keyword-only additions.

        reference_image: PIL image. kps_images: `video_length` keypoint images (PIL images, or (H, W, 3) uint8 arrays,
        or any sequence that makes them on demand: read one window at a time). audio_waveform: 16 kHz mono (samples,).
        strength, eta, callback(step, t, latents) every `callback_steps` steps: as published. `return_dict` is
        accepted for the published signature, which returned the tensor whatever it said (so does this).
        output_type: "tensor", the video (1, 3, L, H, W) float32 in [0, 1] on the CPU (published), or "latent",
        the final latents (1, 4, L, h, w) for `decode_latents` or `stream_frames`.
        do_multi_devices_inference: under `accelerate launch`, each process denoises every n-th batch of windows.
        save_gpu_memory: networks leave the device when their part is done, latents wait on the CPU between
        windows, frames are decoded one at a time.

        Keyword-only, each off by default (the defaults give the published numbers):
        latents: ready-made initial noise (1, 4, L, h, w) instead of drawing it from `generator`.
        guidance_interval (start, end): classifier-free guidance only on the steps i with start <= i / steps < end;
            the others run the conditional branch alone.
        cache_interval N: DeepCache; on N - 1 of every N steps each batch of windows reuses its deep UNet features
            from the last full step and recomputes only the shallow branch.
        context_batch_size: windows per UNet call. decode_batch_frames: frames per VAE call (default: what fits).
        mouth_weights: (video_length,) in [0, 1] (--mouth_in_silence rest: 0 in silences): each run of frames below
            1 is given the audio tokens and the initial noise of its middle frame, so the model draws one still mouth
            through the pause, eased into by the weights (`rest_in_silences`, `rest_noise`).
        resume_from: a DenoisingState to continue from. callback_on_step_end(pipeline, step, t, {"latents",
            "resumable"}) after every step; `resumable` says whether resuming after it gives the identical video.
        return_output: a VExpressPipelineOutput (the video or latents, seconds per phase, UNet calls) instead of
            the tensor alone.
        """
        # 1. Check inputs.
        self.check_inputs(
            kps_images=kps_images, audio_waveform=audio_waveform, width=width, height=height, video_length=video_length,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, strength=strength,
            num_images_per_prompt=num_images_per_prompt, output_type=output_type, context_schedule=context_schedule,
            context_frames=context_frames, context_overlap=context_overlap, num_pad_audio_frames=num_pad_audio_frames,
            guidance_interval=guidance_interval, cache_interval=cache_interval, context_batch_size=context_batch_size,
            resume_from=resume_from, mouth_weights=mouth_weights,
        )
        device = self._execution_device
        timings = {}
        clock = _PhaseClock(timings, device)
        distributed_state = None
        if do_multi_devices_inference:
            from accelerate import PartialState

            distributed_state = PartialState(cpu=not torch.accelerator.is_available())

        with device_levers(device, self.denoising_unet, self.cuda_levers):  # CUDA's measured speed levers, same video
            # 2. Encode the reference portrait and the speech.
            reference_kv = self.encode_reference(reference_image, width, height)
            clock.lap("reference")
            audio_tokens = self.encode_audio(audio_waveform, video_length, num_pad_audio_frames)
            if mouth_weights is not None:
                audio_tokens = rest_in_silences(audio_tokens, mouth_weights)
            clock.lap("audio")
            latent_device = torch.device("cpu") if save_gpu_memory else device
            if save_gpu_memory:
                self._offload("reference_net", "audio_encoder", "audio_projection")
                audio_tokens = audio_tokens.cpu()

            # 3. Latents: timesteps and initial noise (or where an interrupted run stopped).
            self.scheduler.set_timesteps(num_inference_steps, device=device)
            first_step = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
            timesteps = self.scheduler.timesteps[first_step * self.scheduler.order:]
            if resume_from is None:
                latents = self.prepare_latents(video_length, height, width, generator, latents, latent_device, mouth_weights)
                done = 0
            else:
                latents, done = resume_from.latents.to(latent_device, self.denoising_unet.dtype, copy=True), resume_from.step
                for name, value in resume_from.scheduler.items():
                    setattr(self.scheduler, name, _to_devices(value, device, latent_device))
            extra_step_kwargs = {
                name: value for name, value in (("eta", eta), ("generator", generator))
                if name in inspect.signature(self.scheduler.step).parameters
            }

            # 4. Denoise: every step, each batch of context windows through the UNet, each frame's prediction averaged.
            windows = context_windows(video_length, context_frames, context_overlap)
            batches = [windows[i:i + context_batch_size] for i in range(0, len(windows), context_batch_size)]
            conditions = WindowConditions(
                audio_tokens=audio_tokens, kps_images=kps_images, width=width, height=height, reference_kv=reference_kv,
                guidance_scale=guidance_scale, reference_attention_weight=reference_attention_weight,
                audio_attention_weight=audio_attention_weight,
            )
            caches = {} if cache_interval > 1 else None  # batch index -> its CachedFeatures
            unet_calls = 0
            with self.progress_bar(total=(len(timesteps) - done) * len(windows)) as progress:
                progress.set_description("denoising")
                for i, t in enumerate(timesteps):
                    if i < done:
                        continue
                    guided = guidance_scale > 1.0 and guidance_interval[0] <= i / len(timesteps) < guidance_interval[1]
                    reuse = i % cache_interval != 0
                    prediction, calls = self._averaged_prediction(latents, t, batches, conditions, guided, caches, reuse, progress, distributed_state)
                    unet_calls += calls
                    latents = self._scheduler_step(prediction, t.to(latent_device), latents, extra_step_kwargs)
                    if callback is not None and i % callback_steps == 0:
                        callback(i, t, latents.clone())  # the latents are stepped in place: a callback may keep these
                    if callback_on_step_end is not None:  # a resumed run starts without DeepCache features: only before a full step
                        callback_on_step_end(self, i + 1, t, {"latents": latents, "resumable": (i + 1) % cache_interval == 0})
            clock.lap("denoising")

            # 5. Decode, or hand the latents back.
            if output_type == "latent":
                frames = latents
            else:
                frames = self.decode_latents(latents, 1 if save_gpu_memory else decode_batch_frames)
                clock.lap("decoding")
        return VExpressPipelineOutput(frames=frames, timings=timings, unet_calls=unet_calls) if return_output else frames


REST_MECHANISM = "audio tokens and initial noise of the middle frame"  # in resume fingerprints: a change of it restarts a run


def resting_runs(weights: torch.Tensor) -> list[tuple[int, int]]:
    """The runs of frames whose mouth weight is below 1, as (start, stop)."""
    resting = torch.cat([torch.tensor([False]), (weights < 1).cpu(), torch.tensor([False])])
    edges = torch.nonzero(resting[1:] != resting[:-1]).flatten().tolist()
    return list(zip(edges[::2], edges[1::2]))


def rest_in_silences(audio_tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Audio tokens (L, queries, dim) with each run of frames of weight < 1 moved towards the tokens of its middle
    frame: weight 0 takes them whole (one still condition for the whole pause), 1 keeps the frame's own."""
    weights = weights.to(audio_tokens.device, audio_tokens.dtype)
    target = audio_tokens.clone()
    for start, stop in resting_runs(weights):
        target[start:stop] = audio_tokens[(start + stop) // 2]
    return target + weights.reshape(-1, *[1] * (audio_tokens.ndim - 1)) * (audio_tokens - target)


def rest_noise(latents: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Initial noise (1, C, L, h, w) with each run of frames of weight < 1 drawn towards its middle frame's noise: a
    frame keeps w of its own and sqrt(1 - w^2) of the middle frame's, which keeps the noise's variance. The mouth's
    motion in a pause comes mostly from each frame's own noise, not from the audio: with one noise and one audio
    condition the model draws the same mouth through the pause (README: about 4x steadier)."""
    rested = latents.clone()
    for start, stop in resting_runs(weights):
        own = weights[start:stop].to(latents.device, latents.dtype).reshape(-1, 1, 1)
        middle = (start + stop) // 2
        rested[:, :, start:stop] = own * latents[:, :, start:stop] + (1 - own**2).sqrt() * latents[:, :, middle, None]
        rested[:, :, middle] = latents[:, :, middle]  # its own noise, whatever its weight (mixing it with itself would scale it)
    return rested


def _to_devices(value, timestep_device, latent_device):
    """A restored scheduler attribute on the devices the run keeps such values on: timesteps (scalars) with the
    schedule, everything else with the latents."""
    if isinstance(value, list):
        return [_to_devices(item, timestep_device, latent_device) for item in value]
    if isinstance(value, torch.Tensor):
        return value.to(timestep_device if value.ndim == 0 else latent_device)
    return value


def _free_memory(device: torch.device) -> int:
    """Bytes free on `device`: CUDA's own count, else the host's available memory (4 GiB where unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return 4 * 2**30


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

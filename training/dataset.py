"""The training dataset of training.md: target frames, a reference frame outside the margin, keypoint images,
lip masks and audio windows of one clip, with one crop and flip shared by all of them.

Every sample is a function of (seed, key) alone, so a resumed run sees exactly the samples an uninterrupted
one would: key k is clip `order(k // len)[k % len]` of a per-pass shuffle, drawn with its own random generator."""

import math
import warnings

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from pipelines.speech import audio_vectors_per_frame
from motion.keypoints import draw_kps_image
from media.video import read_video_frames

from training.dataset_files import LIP_LANDMARKS, DatasetError, load_audio_embeddings, load_face_info, read_meta


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int, scale, ratio) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width): a crop of `scale` x the area with aspect ratio (w / h) in `ratio`
    (log-uniform), at a random place; the whole frame, clamped to `ratio`, when no such crop fits in 10 tries."""
    area = height * width
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        crop_w, crop_h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1)), crop_h, crop_w
    aspect = width / height
    crop_w, crop_h = (width, round(width / min(ratio))) if aspect < min(ratio) else (
        (round(height * max(ratio)), height) if aspect > max(ratio) else (width, height))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[1], size[0], 3) uint8 with PIL's bilinear filter, which widens with the reduction
    (antialiased, as the published transforms resized): detail finer than the new pixels averages out instead
    of aliasing into stripes."""
    return np.array(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.BILINEAR))


def lip_mask(height: int, width: int, landmarks: np.ndarray, scale: float = 2.0) -> np.ndarray:
    """(height, width) uint8 0/1: the box of the mouth landmarks, scaled by `scale` about its centre."""
    lips = np.asarray(landmarks)[LIP_LANDMARKS]
    (x1, y1), (x2, y2) = lips.min(axis=0).astype(int), lips.max(axis=0).astype(int)
    cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
    mask = np.zeros((height, width), np.uint8)
    mask[max(int(cy - half_h), 0):max(int(cy + half_h) + 1, 0), max(int(cx - half_w), 0):max(int(cx + half_w) + 1, 0)] = 1
    return mask


class TalkingHeadDataset(Dataset):
    """Items are indexed by sample key (see SampleKeys). Each item:
    reference (3, H, W) in [-1, 1]; targets (3, F, H, W) in [-1, 1]; kps_images (3, F, H, W) in [0, 1];
    lip_masks (1, F, H/8, W/8) in [0, 1] (the mask's coverage of each latent cell); audio (F, 2(2P+1), dim) audio vectors for the target frames."""

    def __init__(
        self, meta_paths, *, width: int, height: int, num_frames: int, sample_rate: int = 1, reference_margin: int = 30,
        flip_rate: float = 0.5, crop_scale=(1.0, 1.0), crop_ratio=(0.9, 1.0), num_padding_audio_frames: int = 2,
        vae_scale_factor: int = 8, seed: int = 0,
    ):
        self.clips = [clip for path in meta_paths for clip in read_meta(path)]
        if not self.clips:
            raise DatasetError(f"no clips listed in {', '.join(map(str, meta_paths))}")
        self.width, self.height, self.num_frames, self.sample_rate = width, height, num_frames, sample_rate
        self.reference_margin, self.flip_rate = reference_margin, flip_rate
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.num_padding_audio_frames, self.vae_scale_factor, self.seed = num_padding_audio_frames, vae_scale_factor, seed
        self._unusable: set[int] = set()

    def __len__(self) -> int:
        return len(self.clips)

    def clip_for_key(self, key: int) -> int:
        passes, position = divmod(key, len(self.clips))
        return int(np.random.default_rng([self.seed, passes]).permutation(len(self.clips))[position])

    def __getitem__(self, key: int) -> dict:
        rng = np.random.default_rng([self.seed, 1, key])
        first = self.clip_for_key(key)
        for offset in range(len(self.clips)):  # an unusable clip passes the key on to the next clip
            index = (first + offset) % len(self.clips)
            sample = None if index in self._unusable else self._sample(index, rng)
            if sample is not None:
                return sample
        raise DatasetError(f"no clip is long enough for {self.num_frames} frames with a reference {self.reference_margin} frames away")

    def _choose_frames(self, video_len: int, rng) -> tuple[list[int], int] | None:
        if video_len < self.num_frames:
            return None
        span = min(video_len, (self.num_frames - 1) * self.sample_rate + 1)
        start = int(rng.integers(0, video_len - span + 1))
        targets = np.linspace(start, start + span - 1, self.num_frames).astype(int).tolist()
        allowed = [i for i in range(video_len) if i < targets[0] - self.reference_margin or i > targets[-1] + self.reference_margin]
        return (targets, int(rng.choice(allowed))) if allowed else None

    def _sample(self, index: int, rng) -> dict | None:
        clip = self.clips[index]
        face_info = load_face_info(clip["face_info"])
        chosen = self._choose_frames(len(face_info), rng)
        if chosen is None:
            warnings.warn(f"{clip['video']}: {len(face_info)} frames, too short for {self.num_frames} target frames and a "
                          f"reference {self.reference_margin} frames away; skipped")
            self._unusable.add(index)
            return None
        targets, reference_index = chosen
        # Only the frames used are kept: a clip of minutes would not fit in memory whole.
        frames, num_frames = read_video_frames(clip["video"], targets + [reference_index])
        if num_frames != len(face_info):
            raise DatasetError(f"{clip['video']}: {num_frames} frames but {clip['face_info']} has {len(face_info)}; prepare it again")
        frame_h, frame_w = frames[reference_index].shape[:2]
        top, left, crop_h, crop_w = random_resized_crop_box(rng, frame_h, frame_w, self.crop_scale, self.crop_ratio)
        flip = rng.random() < self.flip_rate
        latent_size = (self.width // self.vae_scale_factor, self.height // self.vae_scale_factor)

        def crop(image):  # (H, W, 3) uint8 -> the crop at the training size, flipped or not
            image = resize_image(image[top:top + crop_h, left:left + crop_w], (self.width, self.height))
            return image[:, ::-1] if flip else image

        def pixels(image):  # (H, W, 3) uint8 -> (3, H, W) in [-1, 1]
            return torch.from_numpy(np.ascontiguousarray(crop(image))).permute(2, 0, 1).float() / 127.5 - 1

        def mask(landmarks):  # INTER_AREA: each latent cell gets the fraction of it the mask covers (a thin closed mouth does not vanish)
            region = lip_mask(frame_h, frame_w, landmarks).astype(np.float32)[top:top + crop_h, left:left + crop_w]
            region = cv2.resize(region, latent_size, interpolation=cv2.INTER_AREA)
            return region[:, ::-1] if flip else region

        kps_images = []
        for i in targets:
            kps_image = crop(draw_kps_image(frame_h, frame_w, face_info[i]["kps"][:3]))
            kps_images.append(kps_image[..., [1, 0, 2]] if flip else kps_image)  # mirrored: left and right eye colours swap
        masks = [np.ascontiguousarray(mask(face_info[i]["landmark_2d_106"])) for i in targets]
        audio = audio_vectors_per_frame(load_audio_embeddings(clip["audio_embeds"]), num_frames, self.num_padding_audio_frames)
        return {
            "reference": pixels(frames[reference_index]),
            "targets": torch.stack([pixels(frames[i]) for i in targets], dim=1),
            "kps_images": torch.from_numpy(np.stack(kps_images)).permute(3, 0, 1, 2).float() / 255,
            "lip_masks": torch.from_numpy(np.stack(masks))[None],
            "audio": audio[targets],
        }


class SampleKeys(Sampler):
    """The sample keys one process reads, from micro-batch `start_micro_batch` on, forever: micro-batch m of the
    run holds keys (m * processes + process) * batch_size + 0 .. batch_size - 1, so a resumed run reads on
    exactly where the interrupted one stopped."""

    def __init__(self, batch_size: int, process_index: int = 0, num_processes: int = 1, start_micro_batch: int = 0):
        self.batch_size, self.process_index, self.num_processes, self.start = batch_size, process_index, num_processes, start_micro_batch

    def __iter__(self):
        micro_batch = self.start
        while True:
            first = (micro_batch * self.num_processes + self.process_index) * self.batch_size
            yield from range(first, first + self.batch_size)
            micro_batch += 1

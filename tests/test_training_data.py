"""The training dataset on a synthetic talking-face set: frame choice, shared crop and flip, masks, audio."""

import json

import numpy as np
import pytest
import torch

from pipelines.speech import audio_vectors_per_frame
from training.dataset_files import DatasetError, load_audio_embeddings, load_face_info, read_meta
from training.dataset import SampleKeys, TalkingHeadDataset, lip_mask, random_resized_crop_box, resize_image
from media.video import read_video, read_video_frames
from scripts.make_synthetic_dataset import write_synthetic_dataset
from scripts.make_tiny_checkpoints import write_tiny_checkpoints

FRAMES = 40


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    ckpts = write_tiny_checkpoints(root / "ckpts")
    return write_synthetic_dataset(root / "data", num_clips=2, num_frames=FRAMES, size=64, audio_encoder_path=ckpts / "wav2vec2-base-960h")


def dataset(meta, **kwargs):
    settings = dict(width=64, height=64, num_frames=4, sample_rate=2, reference_margin=5, seed=3)
    return TalkingHeadDataset([meta], **{**settings, **kwargs})


def test_targets_evenly_spaced_and_reference_outside_the_margin(meta):
    data = dataset(meta)
    for seed in range(200):
        targets, reference = data._choose_frames(FRAMES, np.random.default_rng(seed))
        assert np.all(np.diff(targets) == 2) and 0 <= targets[0] and targets[-1] < FRAMES
        assert reference < targets[0] - 5 or reference > targets[-1] + 5
    assert data._choose_frames(3, np.random.default_rng(0)) is None  # shorter than num_frames
    assert dataset(meta, num_frames=4, reference_margin=30)._choose_frames(40, np.random.default_rng(0)) is None


def test_sample_shapes_ranges_and_audio_windows(meta):
    data = dataset(meta, flip_rate=0.0, crop_ratio=(1.0, 1.0))
    sample = data[5]
    assert sample["reference"].shape == (3, 64, 64) and sample["targets"].shape == (3, 4, 64, 64)
    assert sample["kps_images"].shape == (3, 4, 64, 64) and sample["lip_masks"].shape == (1, 4, 8, 8)
    assert -1 <= sample["targets"].min() and sample["targets"].max() <= 1 and 0 <= sample["kps_images"].min()
    assert sample["lip_masks"].min() == 0 and 0 < sample["lip_masks"].max() <= 1
    # The audio windows are those of the whole clip at the target frames, found by matching.
    clip = read_meta(meta)[data.clip_for_key(5)]
    windows = audio_vectors_per_frame(load_audio_embeddings(clip["audio_embeds"]), FRAMES, 2)
    found = [int(torch.argmin((windows - window).abs().flatten(1).sum(1))) for window in sample["audio"]]
    assert np.all(np.diff(found) == 2) and sample["audio"].shape == (4, 10, 16)
    torch.testing.assert_close(sample["audio"], windows[found])
    # The targets are the video's frames there (the dataset keeps only the frames it uses).
    frames = torch.from_numpy(read_video(clip["video"])[0]).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(sample["targets"], frames[:, found])
    # Without crop or flip the lip mask sits on the mouth landmarks, at latent resolution.
    face = load_face_info(clip["face_info"])[found[0]]
    centre = face["landmark_2d_106"][52:72].mean(axis=0) / 8
    assert sample["lip_masks"][0, 0, int(centre[1]), int(centre[0])] == sample["lip_masks"][0, 0].max()


def test_flip_mirrors_everything_and_swaps_eye_colours(meta):
    plain = dataset(meta, flip_rate=0.0, crop_ratio=(1.0, 1.0))[7]
    flipped = dataset(meta, flip_rate=1.0, crop_ratio=(1.0, 1.0))[7]
    torch.testing.assert_close(flipped["targets"], plain["targets"].flip(-1))
    torch.testing.assert_close(flipped["lip_masks"], plain["lip_masks"].flip(-1))
    torch.testing.assert_close(flipped["kps_images"], plain["kps_images"].flip(-1)[[1, 0, 2]])


def test_crop_is_shared_and_keeps_aspect_in_range():
    rng = np.random.default_rng(0)
    for _ in range(100):
        top, left, h, w = random_resized_crop_box(rng, 100, 120, (1.0, 1.0), (0.9, 1.0))
        assert 0.9 - 0.02 <= w / h <= 1.0 + 0.02 and top + h <= 100 and left + w <= 120
    mask = lip_mask(64, 64, np.tile(np.array([[30.0, 40.0]]), (106, 1)) + np.pad(np.array([[4.0, 2.0], [-4.0, -2.0]]), ((52, 52), (0, 0))))
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (22, 38, 36, 44)  # box 26..34 x 38..42, doubled about (30, 40)


def test_the_same_key_gives_the_same_sample_and_processes_read_disjoint_keys(meta):
    torch.testing.assert_close(dataset(meta)[11], dataset(meta)[11])
    first = [k for _, k in zip(range(6), SampleKeys(2, 0, 2))]
    second = [k for _, k in zip(range(6), SampleKeys(2, 1, 2))]
    assert first == [0, 1, 4, 5, 8, 9] and second == [2, 3, 6, 7, 10, 11]
    assert [k for _, k in zip(range(2), SampleKeys(2, 1, 2, start_micro_batch=3))] == [14, 15]


def test_frames_are_read_selectively_and_a_stale_face_info_is_named(meta, tmp_path):
    clip = read_meta(meta)[0]
    kept, count = read_video_frames(clip["video"], [7, 3, 7, FRAMES + 5])
    assert count == FRAMES and sorted(kept) == [3, 7]
    np.testing.assert_array_equal(kept[7], read_video(clip["video"])[0][7])

    stale = tmp_path / "meta.json"
    short_face_info = tmp_path / "face_info.pt"
    torch.save([[face] for face in load_face_info(clip["face_info"])[:FRAMES - 2]], short_face_info)
    stale.write_text(json.dumps([{**clip, "face_info": str(short_face_info)}]))
    with pytest.raises(DatasetError, match=f"{FRAMES} frames but .*face_info.pt has {FRAMES - 2}; prepare it again"):
        dataset(stale)[0]


def test_training_resize_is_antialiased():
    """Stripes one pixel wide every third column, shrunk 8 times: an even grey (a third of white), not the
    aliased stripes a plain bilinear lookup leaves."""
    import cv2

    stripes = np.zeros((512, 512, 3), np.uint8)
    stripes[:, ::3] = 255
    small = resize_image(stripes, (64, 64)).astype(float)
    assert small.shape == (64, 64, 3) and abs(small.mean() - 255 / 3) < 2 and small.std() < 2
    assert cv2.resize(stripes, (64, 64), interpolation=cv2.INTER_LINEAR).std() > 50  # what the resize used to be

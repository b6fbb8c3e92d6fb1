"""FID and FVD: the networks against pytorch-fid's and VideoGPT's own code on seeded random weights
(tests/fixtures/, made by the scripts beside them), the Fréchet distance against pytorch-fid's, strict loading of
the published file layouts, and the distances' behaviour on real video files."""

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation import distributions
from evaluation.errors import EvaluationError, WeightsError
from evaluation.frechet import frechet_distance
from evaluation.i3d import I3D
from evaluation.inception_fid import FIDInceptionV3
from evaluation.weights import load_strict
from media.video import write_video
from tests.fixtures.inputs import FID_SEED, FVD_SAMPLE, FVD_SEED, fid_images, fvd_clips, fvd_video
from tests.helpers.seeded_weights import draw_weights, relative_l2, signal_keeping_weights

FIXTURES = Path(__file__).with_name("fixtures")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the references were made on one thread


def layer_means(network: torch.nn.Module, names, dims) -> dict:
    """Forward hooks keeping each named layer's output averaged over `dims` (as the fixture scripts kept them)."""
    taps = {}
    for name in names:
        getattr(network, name).register_forward_hook(lambda module, inputs, output, name=name: taps.__setitem__(name, output.mean(dim=dims).numpy()))
    return taps


@pytest.mark.parametrize("network, fixture, seed, inputs, output, dims", [
    (FIDInceptionV3, "fid_inception.npz", FID_SEED, fid_images, "features", (2, 3)),
    (I3D, "fvd_i3d.npz", FVD_SEED, fvd_clips, "logits", (2, 3, 4)),
])
def test_networks_compute_what_the_reference_code_computes(network, fixture, seed, inputs, output, dims, tmp_path):
    expected = np.load(FIXTURES / fixture)
    model = network()
    state = model.state_dict()
    # The published layout: the same keys and shapes (pytorch-fid's order is ours; VideoGPT's puts the classifier first).
    assert sorted(zip(expected["keys"], expected["shapes"])) == sorted((k, str(list(v.shape))) for k, v in state.items())
    draw_weights(model, seed, order=list(expected["keys"]))
    # Through a real file, read as the published one is: weights-only and strictly.
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    model = load_strict(network(), tmp_path / "weights.pth")
    taps = layer_means(model, [key.removeprefix("tap_") for key in expected.files if key.startswith("tap_")], dims)
    with torch.no_grad():
        result = model(inputs()).numpy()
    assert relative_l2(result, expected[output]) < 1e-5
    for name, value in taps.items():
        assert relative_l2(value, expected[f"tap_{name}"]) < 1e-5, name


def test_frechet_distance_is_pytorch_fids():
    expected = np.load(FIXTURES / "fid_inception.npz")
    full = frechet_distance(expected["full_a"], expected["full_b"])
    thin = frechet_distance(expected["thin_a"], expected["thin_b"])  # fewer samples than dimensions: the offset path
    assert full == pytest.approx(expected["distances"][0], rel=1e-9) and thin == pytest.approx(expected["distances"][1], rel=1e-6)
    assert abs(frechet_distance(expected["full_a"], expected["full_a"])) < 1e-9
    with pytest.raises(EvaluationError, match=r"needs at least 2 feature vectors on each side \(1 and 400 given\)"):
        frechet_distance(expected["full_a"][:1], expected["full_b"])


def test_published_files_load_without_batch_counts_and_misfits_name_the_file(tmp_path):
    """Files saved before PyTorch counted batch-norm batches lack num_batches_tracked: not an error. A file of
    another network is one line naming it and the download command."""
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / distributions.INCEPTION_FILE)
    distributions.load_network("fid", tmp_path)
    torch.save(state, tmp_path / distributions.I3D_FILE)
    with pytest.raises(WeightsError, match=r"i3d_pretrained_400\.pt: does not fit I3D \(missing keys: Conv3d_1a_7x7\.conv3d\.weight, .*\); "
                                           r"get it with: python scripts/download_models\.py --include evaluation"):
        distributions.load_network("fvd", tmp_path)


def noisy_videos(folder: Path, frames: int) -> dict[float, Path]:
    """A 64x64 video of a drifting pattern, and the same with Gaussian pixel noise of two strengths."""
    y, x = np.mgrid[:64, :64]
    clean = np.stack([np.stack([128 + 60 * np.sin((x + 2 * t) / 9.0) * np.cos(y / 11.0), 100 + 50 * np.cos((y - t) / 7.0),
                                np.full_like(x, 90.0)], axis=-1) for t in range(frames)])
    rng = np.random.default_rng(0)
    paths = {}
    for sigma in (0.0, 15.0, 45.0):
        paths[sigma] = folder / f"noise_{int(sigma)}.mp4"
        write_video(paths[sigma], np.clip(clean + sigma * rng.standard_normal(clean.shape), 0, 255).astype(np.uint8), 25)
    return paths


@pytest.mark.parametrize("metric, frames, shape", [("fid", 8, (8, 2048)), ("fvd", 32, (2, 400))])
def test_fid_and_fvd_are_zero_on_the_same_video_and_grow_with_noise(metric, frames, shape, tmp_path):
    """FID: every frame's features; FVD: one per 16-frame clip. Random weights that keep the input's signal."""
    networks = (distributions.DistributionNetworks(signal_keeping_weights(FIDInceptionV3(), 0), None) if metric == "fid"
                else distributions.DistributionNetworks(None, signal_keeping_weights(I3D(), 1)))
    features = {sigma: networks.video_features(path)[0 if metric == "fid" else 1] for sigma, path in noisy_videos(tmp_path, frames).items()}
    assert features[0.0].shape == shape
    distance = [frechet_distance(features[sigma], features[0.0]) for sigma in (0.0, 15.0, 45.0)]
    assert abs(distance[0]) < 1e-6 * distance[1] and 0 < distance[1] < distance[2], distance


def test_fvd_clips_are_prepared_as_the_reference_code_prepares_them():
    """A decoded 100x180 clip: the shorter side to 224, the centre cropped, [-1, 1] (VideoGPT's preprocess, doubled as
    common_metrics_on_video_quality does)."""
    expected = np.load(FIXTURES / "fvd_i3d.npz")["preprocessed"]
    clip = distributions.fvd_clip(torch.stack([distributions.frame_pixels(frame.numpy()) for frame in fvd_video()]))
    assert clip.shape == (1, 3, 16, 224, 224)
    assert relative_l2(clip[0][FVD_SAMPLE].numpy(), expected) < 1e-6


def test_a_set_score_that_cannot_be_made_is_one_skip_line():
    from evaluation.runner import _distribution_scores

    rng = np.random.default_rng(0)
    features = {("generated", "fid"): [rng.standard_normal((5, 4))], ("ground_truth", "fid"): [rng.standard_normal((3, 4)), rng.standard_normal((2, 4))],
                ("generated", "fvd"): [rng.standard_normal((3, 4))]}  # every ground-truth video failed to decode
    skipped = []
    scores = _distribution_scores(features, ("fid", "fvd"), skipped)
    assert scores["fid_frames"] == [5, 5] and scores["fid"] > 0 and "fvd" not in scores
    assert skipped == ["FVD: no ground-truth video could be read"]

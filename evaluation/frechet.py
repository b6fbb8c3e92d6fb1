"""The Fréchet distance between two sets of network features, as pytorch-fid computes it (FID and FVD alike)."""

import warnings

import numpy as np
from scipy import linalg

from evaluation.errors import EvaluationError

SINGULAR_OFFSET = 1e-6  # added to both covariances' diagonals when their product has no finite square root


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Features (N, D) and (M, D) -> |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of the Gaussians fitted to
    them (unbiased covariances). Needs two samples of each; fewer samples than dimensions give rank-deficient
    covariances, which pytorch-fid (and so this) handles with a small diagonal offset."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise EvaluationError(f"the Fréchet distance needs at least 2 feature vectors on each side ({len(a)} and {len(b)} given)")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # singular products are expected with few samples; handled below as pytorch-fid does
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = np.eye(len(cov_a)) * SINGULAR_OFFSET
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise EvaluationError(f"the Fréchet distance's matrix square root is complex (imaginary part {np.abs(root.imag).max():.3g}); "
                                  "give more videos or frames")
        root = root.real
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))

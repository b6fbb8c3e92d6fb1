"""Driving keypoints onto the portrait: `retarget_kps` by strategy (the published ones and `similarity_retarget`, the
driver's head motion on the portrait's face, from the face pose of the three V-Kps keypoints).

A keypoint triple (3, 2) is re-expressed as a pose, one-to-one:
    centre        (2,)  the eye midpoint, pixels (x, y), y down
    angle         ()    the roll: the direction from the left to the right eye, radians (0 = eyes level)
    eye_distance  ()    pixels; this is the face size that translations are measured in
    nose          (2,)  the nose tip in the face's own frame, in eye distances from the eye midpoint:
                        (along the eye line, across it towards the chin). A head turn moves it along,
                        a nod across; the portrait's own proportions are its resting value.
Any leading dimensions are kept: kps (..., 3, 2) <-> pose fields (..., [2]).
"""

from typing import NamedTuple

import numpy as np
import torch

from motion.keypoints import LEFT_EYE, NOSE, RIGHT_EYE

RETARGET_STRATEGIES = ("fix_face", "no_retarget", "offset_retarget", "naive_retarget", "similarity_retarget")
# Driving frames whose turn is within this many eye distances (about 5 degrees of head turn) of the frame closest
# to the portrait's turn all count as resting: the neutral pose is their median, so no single frame decides it.
NEUTRAL_TURN_TOLERANCE = 0.05


class FacePose(NamedTuple):
    centre: torch.Tensor
    angle: torch.Tensor
    eye_distance: torch.Tensor
    nose: torch.Tensor


def _perpendicular(direction: torch.Tensor) -> torch.Tensor:
    """(..., 2) unit vectors along the eye line -> across it, turned +90 degrees: towards the chin of an upright face."""
    return torch.stack([-direction[..., 1], direction[..., 0]], dim=-1)


def face_pose(kps) -> FacePose:
    """Keypoints (..., 3, 2) pixels -> their FacePose, computed in float64."""
    kps = torch.as_tensor(np.asarray(kps, dtype=np.float64))
    left, right, nose = kps[..., LEFT_EYE, :], kps[..., RIGHT_EYE, :], kps[..., NOSE, :]
    centre, eye_line = (left + right) / 2, right - left
    eye_distance = eye_line.norm(dim=-1).clamp_min(1e-6)
    along = eye_line / eye_distance[..., None]
    offset = (nose - centre) / eye_distance[..., None]
    nose_in_face = torch.stack([(offset * along).sum(-1), (offset * _perpendicular(along)).sum(-1)], dim=-1)
    return FacePose(centre, torch.atan2(eye_line[..., 1], eye_line[..., 0]), eye_distance, nose_in_face)


def pose_kps(pose: FacePose) -> torch.Tensor:
    """FacePose -> keypoints (..., 3, 2) float32 pixels: the inverse of `face_pose`."""
    along = torch.stack([torch.cos(pose.angle), torch.sin(pose.angle)], dim=-1)
    half_eye_line = along * (pose.eye_distance[..., None] / 2)
    nose = pose.centre + pose.eye_distance[..., None] * (pose.nose[..., :1] * along + pose.nose[..., 1:] * _perpendicular(along))
    return torch.stack([pose.centre - half_eye_line, pose.centre + half_eye_line, nose], dim=-2).float()


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Radians -> the same angle in [-pi, pi)."""
    return torch.remainder(angle + torch.pi, 2 * torch.pi) - torch.pi


def neutral_pose(driving: FacePose, reference_turn: float, tolerance: float = NEUTRAL_TURN_TOLERANCE) -> FacePose:
    """The driver's resting pose (fields without the frame dimension): the median, field by field, over the
    driving frames (L,) whose turn (nose along the eye line, eye distances) is within `tolerance` of the turn
    closest to the portrait's `reference_turn`. A median, so a few glitched detections cannot move it."""
    turn_gap = (driving.nose[:, 0] - reference_turn).abs()
    resting = turn_gap <= turn_gap.min() + tolerance
    median = lambda values: torch.quantile(values[resting], 0.5, dim=0)  # noqa: E731  the mean of the two middle values
    first_angle = driving.angle[resting][0]  # angles are taken relative to a resting one, so that none wraps around
    return FacePose(
        median(driving.centre), first_angle + median(wrap_angle(driving.angle - first_angle)),
        median(driving.eye_distance), median(driving.nose),
    )


def similarity_retarget(reference_kps, driving_kps) -> torch.Tensor:
    """(reference (3, 2), driving (L, 3, 2)) pixels -> (L, 3, 2) float32: the portrait moved as the driver moves.

    Each driving frame is a similarity transform of the driver's neutral pose (roll, relative scale, and the eye
    midpoint's translation in units of the neutral eye distance) plus its change of shape (the nose's move in
    the face frame: turns and nods). The same roll, relative scale and translation, the latter rescaled to the
    portrait's eye distance, are applied to the portrait, and the nose moves by the same amount in the face
    frame. So the portrait keeps its own eye distance and nose offset, and a driving frame equal to the neutral
    pose gives back the portrait exactly."""
    reference, driving = face_pose(reference_kps), face_pose(driving_kps)
    neutral = neutral_pose(driving, float(reference.nose[0]))
    portrait_per_driver = reference.eye_distance / neutral.eye_distance  # portrait pixels per driver pixel
    retargeted = FacePose(
        centre=reference.centre + (driving.centre - neutral.centre) * portrait_per_driver,
        angle=reference.angle + wrap_angle(driving.angle - neutral.angle),
        eye_distance=reference.eye_distance * driving.eye_distance / neutral.eye_distance,
        nose=reference.nose + (driving.nose - neutral.nose),
    )
    return pose_kps(retargeted)


def eye_nose_ratio(kps: torch.Tensor) -> torch.Tensor:
    """|left eye - nose| / |right eye - nose|: how far the face is turned. kps (..., 3, 2) -> (...)."""
    return (kps[..., LEFT_EYE, :] - kps[..., NOSE, :]).norm(dim=-1) / ((kps[..., RIGHT_EYE, :] - kps[..., NOSE, :]).norm(dim=-1) + 1e-6)


def _eye_distance(kps):
    return (kps[..., LEFT_EYE, :] - kps[..., RIGHT_EYE, :]).norm(dim=-1)


def _nose_to_eye_line(kps):
    """Distance from the nose to the segment between the eyes."""
    left, right, nose = kps[..., LEFT_EYE, :], kps[..., RIGHT_EYE, :], kps[..., NOSE, :]
    segment = right - left
    along = (((nose - left) * segment).sum(-1) / (segment * segment).sum(-1)).clamp(0, 1)
    return (nose - (left + along[..., None] * segment)).norm(dim=-1)


def closest_pose_frame(reference_kps: torch.Tensor, driving_kps: torch.Tensor) -> int:
    """The driving frame whose eye-nose ratio is closest to the reference's."""
    return int((eye_nose_ratio(driving_kps) - eye_nose_ratio(reference_kps)).abs().argmin())


def retarget_kps(reference_kps, driving_kps, strategy: str, num_frames: int | None = None) -> torch.Tensor:
    """(reference (3, 2), driving (L, 3, 2)) -> the L keypoint triples to draw, by strategy:
    fix_face: the reference, still; no_retarget: the driving sequence as it is;
    offset_retarget: the reference moved by half of the driving nose's (rescaled) displacement, inverted,
        as the published code does; naive_retarget: the rescaled driving sequence moved so that its
        first nose lands on the reference nose; similarity_retarget: the driver's roll, relative scale and
        translation (in face sizes) and its turns applied to the reference, which keeps its proportions
        (motion.retarget)."""
    reference_kps = torch.as_tensor(np.asarray(reference_kps, dtype=np.float32))
    if strategy == "fix_face":
        return reference_kps.expand(num_frames if num_frames is not None else len(driving_kps), 3, 2).clone()
    driving_kps = torch.as_tensor(np.asarray(driving_kps, dtype=np.float32))
    if strategy == "no_retarget":
        return driving_kps.clone()
    if strategy == "similarity_retarget":
        return similarity_retarget(reference_kps, driving_kps)
    if strategy not in RETARGET_STRATEGIES:
        raise ValueError(f"unknown retarget strategy {strategy!r}; choose one of {', '.join(RETARGET_STRATEGIES)}")
    anchor = driving_kps[closest_pose_frame(reference_kps, driving_kps)]
    scale = torch.stack([_eye_distance(reference_kps) / _eye_distance(anchor), _nose_to_eye_line(reference_kps) / _nose_to_eye_line(anchor)])
    scaled = driving_kps * scale
    if strategy == "offset_retarget":
        nose_motion = scaled[:, NOSE] - scaled[0, NOSE]
        return reference_kps - nose_motion[:, None, :] / 2
    return scaled - scaled[0, NOSE] + reference_kps[NOSE]

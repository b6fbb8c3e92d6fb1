"""Video length and the overlapping context windows the denoiser works on."""


def num_frames_for_audio(duration_s: float, fps: float = 30.0) -> int:
    """L0: the frame count the audio asks for, as the published code computes it."""
    return int(duration_s * fps)


def video_length(requested_frames: int, context_frames: int = 24, context_overlap: int = 4) -> int:
    """The length L a video of `requested_frames` (L0) is generated at: whole windows only, so a few tail
    frames are dropped. Shorter than one window: one window of all the frames (at least 1)."""
    if requested_frames <= context_frames:
        return max(requested_frames, 1)
    stride = context_frames - context_overlap
    num_windows = (requested_frames - context_frames) // stride + 1
    return (num_windows - 1) * stride + context_frames


def context_windows(num_frames: int, context_frames: int = 24, context_overlap: int = 4) -> list[range]:
    """Windows of `context_frames` consecutive frames, starting every `context_frames - context_overlap`
    frames. For a length `video_length` produced, they tile it exactly; for any other length the last
    window is moved back to end on the last frame, so every frame is covered."""
    if context_overlap >= context_frames:
        raise ValueError(f"context_overlap ({context_overlap}) must be smaller than context_frames ({context_frames})")
    if num_frames <= context_frames:
        return [range(num_frames)]
    stride = context_frames - context_overlap
    starts = list(range(0, num_frames - context_frames + 1, stride))
    if starts[-1] + context_frames < num_frames:
        starts.append(num_frames - context_frames)
    return [range(start, start + context_frames) for start in starts]

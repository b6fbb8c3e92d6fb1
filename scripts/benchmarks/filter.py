"""The flicker filter: the previous implementation against the streamed one."""

import time


def run(args) -> dict:
    """The flicker filter on `args.frames` frames of 512x512 (or --width x --height): the previous implementation
    (unfold + sort on the float video) against the streamed min/max one on uint8 frames, same output checked."""
    import torch
    import torch.nn.functional as F

    from pipelines.flicker_filter import FlickerFilter

    def previous_filter(video):  # the implementation this project had before, kept here to time and check against
        padded = F.pad(video, (1, 1, 1, 1, 1, 1), mode="reflect")
        out = torch.empty_like(video)
        for start in range(0, video.shape[2], 8):
            stop = min(start + 8, video.shape[2])
            neighbours = padded[:, :, start:stop + 2].unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1)
            out[:, :, start:stop] = neighbours.flatten(-3).median(dim=-1).values
        return out

    video = torch.rand(1, 3, args.frames, args.height, args.width, generator=torch.Generator().manual_seed(0))
    best = {"previous": float("inf"), "streamed_uint8": float("inf")}
    for _ in range(args.repeats):
        started = time.perf_counter()
        expected = (previous_filter(video) * 255).to(torch.uint8)
        best["previous"] = min(best["previous"], time.perf_counter() - started)
        started = time.perf_counter()
        stream, frames = FlickerFilter(args.frames), (video[0].transpose(0, 1) * 255).to(torch.uint8)
        filtered = torch.cat([stream.push(frames[i:i + 8]) for i in range(0, args.frames, 8)])
        best["streamed_uint8"] = min(best["streamed_uint8"], time.perf_counter() - started)
        assert torch.equal(filtered.transpose(0, 1)[None], expected), "the filters disagree"
    return dict(report="filter", frames=args.frames, size=f"{args.width}x{args.height}", identical=True,
                seconds_per_frame={k: round(v / args.frames, 4) for k, v in best.items()},
                speedup=round(best["previous"] / best["streamed_uint8"], 2))

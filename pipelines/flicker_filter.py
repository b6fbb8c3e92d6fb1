"""The flicker filter: a 3x3x3 median over (time, height, width) per colour channel, edges mirrored (the edge
frame or pixel is not repeated), computed exactly with min/max operations only, so it runs on any device and
dtype, and over a stream of frames with one frame of halo on each side.

Why it is exact and cheap: sort each pixel's three frames (t-1, t, t+1) into low, middle and high planes. Of the
27 values around a pixel, the 5 smallest lows, the 2 smallest middles, the 5 largest highs and the 2 largest
middles can never be the median (counting what each is known to be above or below), so the median of 27 is the
median of the 13 values left: the 4 largest lows, the 5 middle middles and the 4 smallest highs of the 3x3
neighbourhood. Sorting each plane's 3x3 neighbourhood by columns and then rows finds those sets with a few
min/max; a pruned Batcher network takes the median of the 13. A median commutes with any non-decreasing map, so
filtering frames after their conversion to uint8 gives exactly the frames of filtering first."""

import functools

import torch
import torch.nn.functional as F


def median_filter_video(video: torch.Tensor) -> torch.Tensor:
    """(batch, channels, frames, H, W) -> the filtered video, same shape and dtype (the whole video at once)."""
    return torch.stack([FlickerFilter(v.shape[1]).push(v.transpose(0, 1)).transpose(0, 1) for v in video])


class FlickerFilter:
    """The median over a stream of `num_frames` frames, fed in order in batches (frames, channels, H, W).
    `push` returns the frames it can filter so far: all but the newest (its successor is not known yet), and all
    the rest when the last frame arrives. It holds at most the last two frames between pushes."""

    def __init__(self, num_frames: int):
        self.num_frames, self.received, self.emitted = num_frames, 0, 0
        self._frames = None  # frames `self._first` .. received - 1
        self._first = 0

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        self._frames = frames if self._frames is None else torch.cat([self._frames, frames])
        self.received += len(frames)
        if self.received > self.num_frames:
            raise ValueError(f"{self.received} frames pushed into a filter of {self.num_frames}")
        stop = self.received if self.received == self.num_frames else self.received - 1  # frames emitted .. stop - 1 are ready
        if stop <= self.emitted:
            return frames[:0]
        frame = lambda i: self._frames[i - self._first:i - self._first + 1]  # noqa: E731
        if self.num_frames == 1:
            before = after = frame(0)
        else:  # mirrored at both ends
            before = frame(self.emitted - 1) if self.emitted > 0 else frame(1)
            after = frame(stop) if stop < self.num_frames else frame(stop - 2)
        block = torch.cat([before, self._frames[self.emitted - self._first:stop - self._first], after])
        # A one-frame video cannot be mirrored in time; torch's padding then replicates every edge, as before.
        filtered = median_3x3x3(block, spatial_padding="replicate" if self.num_frames == 1 else "reflect")
        self._frames = self._frames[stop - 1 - self._first:]  # the next frame's predecessor, and the newest frame
        self._first, self.emitted = stop - 1, stop
        return filtered


def _sort3(a, b, c):
    """Elementwise sort of three tensors -> (low, middle, high)."""
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    low, c = torch.minimum(low, c), torch.maximum(low, c)
    middle, high = torch.minimum(high, c), torch.maximum(high, c)
    return low, middle, high


def _grid(plane):
    """plane (..., H + 2, W + 2) -> {(row, column): (..., H, W)}: each pixel's 3x3 neighbourhood sorted down its
    columns, then along its rows (rows and columns then both run from small to large)."""
    columns = _sort3(plane[..., :-2, :], plane[..., 1:-1, :], plane[..., 2:, :])
    grid = {}
    for row, values in enumerate(columns):
        for column, value in enumerate(_sort3(values[..., :-2], values[..., 1:-1], values[..., 2:])):
            grid[row, column] = value
    return grid


def median_3x3x3(block: torch.Tensor, spatial_padding: str = "reflect") -> torch.Tensor:
    """block (frames + 2, channels, H, W), one frame of context before and after -> (frames, channels, H, W):
    the median of each value's 3x3x3 neighbourhood, the image edges padded with `spatial_padding`."""
    padded = F.pad(block, (1, 1, 1, 1), mode=spatial_padding)
    low, middle, high = _sort3(padded[:-2], padded[1:-1], padded[2:])
    low, middle, high = _grid(low), _grid(middle), _grid(high)
    candidates = [  # see the module docstring
        low[1, 2], low[2, 1], low[2, 2], torch.maximum(torch.maximum(low[0, 2], low[2, 0]), low[1, 1]),
        torch.maximum(middle[0, 1], middle[1, 0]), torch.minimum(middle[1, 2], middle[2, 1]), middle[0, 2], middle[1, 1], middle[2, 0],
        high[0, 0], high[0, 1], high[1, 0], torch.minimum(torch.minimum(high[0, 2], high[2, 0]), high[1, 1]),
    ]
    return _median_of_13(candidates)


def _batcher_comparators(width: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort for `width` (a power of two) wires: comparators (i, j), i < j, min to i."""
    comparators, p = [], 1
    while p < width:
        k = p
        while k >= 1:
            for j in range(k % p, width - k, 2 * k):
                for i in range(min(k, width - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return comparators


@functools.cache
def _median_of_13_program() -> tuple[list, tuple]:
    """The min/max operations that give the 7th smallest of 13 inputs: a 16-wire sorting network with one
    "smaller than anything" input on wire 0 and two "larger than anything" inputs on wires 2 and 4 (constants
    make a comparator a no-op or a swap), keeping only the operations output wire 7 depends on.
    Returns (operations [(op, a, b)] in order, output), nodes being ("input", k) or indices into operations."""
    wires, inputs = {}, iter(range(13))
    for wire in range(16):
        wires[wire] = "low" if wire == 0 else "high" if wire in (2, 4) else ("input", next(inputs))
    operations, made = [], {}

    def node(op, a, b):
        key = (op, a, b)
        if key not in made:
            made[key] = len(operations)
            operations.append(key)
        return made[key]

    for i, j in _batcher_comparators(16):
        a, b = wires[i], wires[j]
        if a == "low" or b == "high":
            continue
        if a == "high" or b == "low":
            wires[i], wires[j] = b, a
            continue
        wires[i], wires[j] = ("min", a, b), ("max", a, b)
    # Materialise only what wire 7 needs, each operation once.
    def build(value):
        if value[0] == "input":
            return value
        return node(value[0], build(value[1]), build(value[2]))

    return operations, build(wires[7])


def _median_of_13(values: list[torch.Tensor]) -> torch.Tensor:
    operations, output = _median_of_13_program()
    last_use = {}
    for index, (_, a, b) in enumerate(operations):
        last_use[a] = last_use[b] = index
    results = {}
    get = lambda ref: values[ref[1]] if isinstance(ref, tuple) else results[ref]  # noqa: E731
    for index, (op, a, b) in enumerate(operations):
        results[index] = (torch.minimum if op == "min" else torch.maximum)(get(a), get(b))
        for ref in (a, b):  # free what no later operation reads
            if last_use[ref] == index and not isinstance(ref, tuple):
                del results[ref]
    return get(output)

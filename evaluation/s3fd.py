"""S3FD, the face detector of the official SyncNet pipeline (joonson/syncnet_python's `detectors/s3fd`).

`S3FD()` has the state-dict keys of the published `sfd_face.pth`; `detect_faces` is the official preprocessing,
decoding and suppression around it."""


import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# BGR channel means the network was trained with (subtracted from an RGB image in reversed order)
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
MIN_SIZES = (16, 32, 64, 128, 256, 512)  # anchor size of each detection layer, in input pixels
STEPS = (4, 8, 16, 32, 64, 128)  # its stride
VARIANCES = (0.1, 0.2)
TOP_K = 750  # detections kept per class
NMS_TOP_K = 5000  # candidates looked at by the network's own suppression
NMS_OVERLAP = 0.3
SCORE_FLOOR = 0.05  # candidates below this score are dropped before suppression


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels with a learned per-channel scale: (N, C, H, W) -> same."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return self.weight[None, :, None, None] * (x / norm)


def _vgg16_trunk() -> nn.ModuleList:
    """VGG16's convolutions (pool5 kept at stride 2) then fc6 (dilated 3x3) and fc7 (1x1) as convolutions;
    indices 15, 22 and 29 end conv3_3, conv4_3 and conv5_3, whose outputs are detection sources."""
    layers: list[nn.Module] = []
    channels = 3
    stages = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
    for stage, (width, repeats) in enumerate(stages):
        for _ in range(repeats):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        # ceil_mode after conv3: odd sizes round up there, as in the published network
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=stage == 2))
    layers += [nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True), nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


class S3FD(nn.Module):
    """Single Shot Scale-invariant Face Detector (Zhang et al., 2017).

    (1, 3, H, W) mean-subtracted RGB floats -> (1, 2, 750, 5) detections: per class (0 background, 1 face) rows
    of score, x1, y1, x2, y2 (relative to the image, best first, zero rows after the last).
    """

    def __init__(self):
        super().__init__()
        self.vgg = _vgg16_trunk()
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList([
            nn.Conv2d(1024, 256, 1), nn.Conv2d(256, 512, 3, stride=2, padding=1),
            nn.Conv2d(512, 128, 1), nn.Conv2d(128, 256, 3, stride=2, padding=1),
        ])
        source_channels = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, padding=1) for c in source_channels])
        # the first layer predicts three background scores and keeps their max ("max-out" for small faces)
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, padding=1) for i, c in enumerate(source_channels)])

    def sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps the heads look at, strides 4 to 128."""
        found = []
        norms = {15: self.L2Norm3_3, 22: self.L2Norm4_3, 29: self.L2Norm5_3}
        for index, layer in enumerate(self.vgg):
            x = layer(x)
            if index in norms:
                found.append(norms[index](x))
        found.append(x)
        for index, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if index % 2 == 1:
                found.append(x)
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        locs, confs, sizes = [], [], []
        for index, source in enumerate(self.sources(x)):
            conf = self.conf[index](source)
            if index == 0:
                conf = torch.cat((conf[:, :3].max(dim=1, keepdim=True).values, conf[:, 3:]), dim=1)
            loc = self.loc[index](source)
            sizes.append(loc.shape[2:])
            locs.append(loc.permute(0, 2, 3, 1).reshape(len(x), -1))
            confs.append(conf.permute(0, 2, 3, 1).reshape(len(x), -1))
        loc = torch.cat(locs, 1).view(len(x), -1, 4)
        scores = torch.cat(confs, 1).view(len(x), -1, 2).softmax(dim=-1)
        return _detect(loc, scores, prior_boxes(tuple(x.shape[2:]), sizes))


def prior_boxes(image_size: tuple[int, int], feature_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Anchors (P, 4) as centre x, centre y, width, height relative to the (H, W) input, row-major per layer."""
    height, width = image_size
    boxes = []
    for (rows, cols), step, size in zip(feature_sizes, STEPS, MIN_SIZES):
        i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        # same float64 arithmetic as the official per-anchor loop, then float32
        cx = (j.ravel() + 0.5) / (width / step)
        cy = (i.ravel() + 0.5) / (height / step)
        boxes.append(np.stack([cx, cy, np.full_like(cx, size / width), np.full_like(cy, size / height)], axis=1))
    return torch.from_numpy(np.concatenate(boxes).astype(np.float32))


def decode(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """SSD box regression (P, 4) against anchors (P, 4) -> corners x1, y1, x2, y2 (P, 4)."""
    centres = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    corners_min = centres - sizes / 2
    return torch.cat((corners_min, sizes + corners_min), 1)


def _suppress(boxes: torch.Tensor, scores: torch.Tensor, overlap: float, top_k: int) -> list[int]:
    """Greedy non-maximum suppression, highest score first, among the `top_k` best: kept indices in order."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    order = scores.sort(0).indices[-top_k:]  # ascending; the best is taken from the end
    keep = []
    while order.numel() > 0:
        best = order[-1]
        keep.append(int(best))
        order = order[:-1]
        if order.numel() == 0:
            break
        width = (x2[order].clamp(max=x2[best]) - x1[order].clamp(min=x1[best])).clamp(min=0.0)
        height = (y2[order].clamp(max=y2[best]) - y1[order].clamp(min=y1[best])).clamp(min=0.0)
        inter = width * height
        iou = inter / ((area[order] - inter) + area[best])
        order = order[iou.le(overlap)]
    return keep


def _detect(loc: torch.Tensor, scores: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """(N, P, 4) regressions and (N, P, 2) class scores -> (N, 2, TOP_K, 5) detections (class 0 left zero)."""
    output = torch.zeros(len(loc), 2, TOP_K, 5)
    for n in range(len(loc)):
        boxes = decode(loc[n], priors)
        face = scores[n, :, 1]
        candidates = face > SCORE_FLOOR
        kept = _suppress(boxes[candidates], face[candidates], NMS_OVERLAP, NMS_TOP_K)[:TOP_K]
        if kept:
            kept = torch.tensor(kept)
            output[n, 1, :len(kept)] = torch.cat((face[candidates][kept, None], boxes[candidates][kept]), 1)
    return output


def preprocess(image_rgb: np.ndarray, scale: float) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 network input, resized by `scale` (bilinear)."""
    scaled = cv2.resize(image_rgb, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    chw = scaled.transpose(2, 0, 1).astype(np.float32) - BGR_MEAN[::-1, None, None]
    return torch.from_numpy(np.ascontiguousarray(chw))[None]


def nms_numpy(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy suppression of (K, 5) rows x1, y1, x2, y2, score: indices kept, best first."""
    x1, y1, x2, y2, scores = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = width * height
        order = rest[inter / (areas[best] + areas[rest] - inter) <= threshold]
    return np.array(keep, dtype=np.intp)


@torch.no_grad()
def detect_faces(net: S3FD, image_rgb: np.ndarray, conf_th: float = 0.8, scales: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """Faces in an (H, W, 3) uint8 RGB image: (K, 5) float64 rows x1, y1, x2, y2 (pixels), score; detections
    above `conf_th` at each scale, then suppressed across scales at IoU 0.1."""
    height, width = image_rgb.shape[:2]
    rows = []
    for scale in scales:
        detections = net(preprocess(image_rgb, scale))
        to_pixels = torch.tensor([width, height, width, height], dtype=torch.float32)
        for cls in range(detections.shape[1]):
            for det in detections[0, cls]:
                if not det[0] > conf_th:
                    break
                rows.append([*(det[1:] * to_pixels).numpy().tolist(), float(det[0])])
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return boxes[nms_numpy(boxes, 0.1)] if len(boxes) else boxes

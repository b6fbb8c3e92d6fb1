"""A small SCRFD-format ONNX face detector for offline tests: insightface's real loading and decoding code
runs on it. It "detects" a face at each 8x8 cell of pure green (a marker the tests draw), and reports
fixed keypoints around that cell (image pixels, relative to the cell's top-left corner)."""

from pathlib import Path

import numpy as np

# onnx is imported by the functions that build models: tests that only draw markers (tests/test_gpu.py, on a
# machine without onnx) import this module too.
CELL = 8
# (x, y) offsets in pixels from the marker cell's top-left corner: left eye, right eye, nose, mouth corners.
KPS_OFFSETS = np.array([[-12, -8], [20, -8], [4, 8], [-8, 16], [16, 16]], dtype=np.float32)
BOX_DISTANCES = np.array([24, 24, 32, 32], dtype=np.float32)  # left, top, right, bottom


def draw_marker(image: np.ndarray, x: int, y: int) -> np.ndarray:
    """Paint the marker around the cell (RGB) whose top-left corner is (x, y), multiples of 8: a green square
    half a cell wider on each side, so that video compression leaves the cell itself green while its
    neighbours stay half grey. Returns the image."""
    half = CELL // 2
    image[max(y - half, 0):y + CELL + half, max(x - half, 0):x + CELL + half] = (0, 255, 0)
    return image


def expected_kps(x: int, y: int) -> np.ndarray:
    """The three keypoints (left eye, right eye, nose) the detector reports for a marker at (x, y)."""
    return (np.array([x, y], dtype=np.float32) + KPS_OFFSETS[:3]).astype(np.float32)


def _stride_outputs(stride, live):
    """Nodes and initialisers giving (score, bbox, kps) for one stride, 2 anchors per cell."""
    from onnx import helper, numpy_helper
    s = str(stride)
    nodes = [helper.make_node("AveragePool", ["input.1"], [f"pool{s}"], kernel_shape=[stride, stride], strides=[stride, stride])]
    # Greenness of a cell in the normalised RGB blob ((x - 127.5) / 128): G - (R + B) / 2, 2 for pure green.
    score_w = np.tile(np.array([[-0.5, 1.0, -0.5]], dtype=np.float32), (2, 1)).reshape(2, 3, 1, 1) * 20
    score_b = np.full(2, -20 * 1.5 if live else -1000, dtype=np.float32)
    box_b = np.tile(BOX_DISTANCES / stride, 2).astype(np.float32)
    kps_b = np.tile(KPS_OFFSETS.reshape(-1) / stride, 2).astype(np.float32)
    inits = [
        numpy_helper.from_array(score_w, f"score_w{s}"), numpy_helper.from_array(score_b, f"score_b{s}"),
        numpy_helper.from_array(np.zeros((8, 3, 1, 1), np.float32), f"box_w{s}"), numpy_helper.from_array(box_b, f"box_b{s}"),
        numpy_helper.from_array(np.zeros((20, 3, 1, 1), np.float32), f"kps_w{s}"), numpy_helper.from_array(kps_b, f"kps_b{s}"),
    ]
    for kind, width in (("score", 1), ("box", 4), ("kps", 10)):
        nodes.append(helper.make_node("Conv", [f"pool{s}", f"{kind}_w{s}", f"{kind}_b{s}"], [f"{kind}_conv{s}"]))
        source = f"{kind}_conv{s}"
        if kind == "score":
            nodes.append(helper.make_node("Sigmoid", [source], [f"score_sig{s}"]))
            source = f"score_sig{s}"
        nodes.append(helper.make_node("Transpose", [source], [f"{kind}_t{s}"], perm=[0, 2, 3, 1]))
        inits.append(numpy_helper.from_array(np.array([-1, width], dtype=np.int64), f"{kind}_shape{s}"))
        nodes.append(helper.make_node("Reshape", [f"{kind}_t{s}", f"{kind}_shape{s}"], [f"{kind}_{s}"]))
    return nodes, inits


def _save_in_buffalo_l(graph, model_root, name: str) -> Path:
    """Check the graph as an opset-13 model and save it as `model_root/models/buffalo_l/name`; returns `model_root`."""
    import onnx
    from onnx import helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = Path(model_root) / "models" / "buffalo_l"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / name)
    return Path(model_root)


def write_marker_detector(model_root: str | Path) -> Path:
    """Write `model_root/models/buffalo_l/det_10g.onnx` and return `model_root` (an --insightface_model_path)."""
    from onnx import TensorProto, helper
    nodes, inits = [], []
    for stride in (8, 16, 32):
        stride_nodes, stride_inits = _stride_outputs(stride, live=stride == 8)
        nodes += stride_nodes
        inits += stride_inits
    outputs = [
        helper.make_tensor_value_info(f"{kind}_{stride}", TensorProto.FLOAT, ["n", width])
        for kind, width in (("score", 1), ("box", 4), ("kps", 10)) for stride in (8, 16, 32)
    ]
    graph = helper.make_graph(
        nodes, "marker_detector", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])], outputs, inits
    )
    return _save_in_buffalo_l(graph, model_root, "det_10g.onnx")


# The landmark model's 106 points, in its normalised crop coordinates ([-1, 1] across 1.5x the face box, centred
# on it): a ring for the face outline, and the mouth points (insightface's indices 52..71) on a small ellipse.
_ANGLES = np.linspace(0, 2 * np.pi, 106, endpoint=False, dtype=np.float32)
LANDMARKS_106 = np.stack([0.5 * np.cos(_ANGLES), 0.5 * np.sin(_ANGLES)], axis=1)
_MOUTH = np.linspace(0, 2 * np.pi, 20, endpoint=False, dtype=np.float32)
LANDMARKS_106[52:72] = np.stack([0.2 * np.cos(_MOUTH), 0.3 + 0.1 * np.sin(_MOUTH)], axis=1)


def expected_landmarks(x: int, y: int) -> np.ndarray:
    """The (106, 2) landmarks in image pixels for a marker at (x, y): its face box is (x - 24, y - 24, x + 32, y + 32)."""
    left, top, right, bottom = x - BOX_DISTANCES[0], y - BOX_DISTANCES[1], x + BOX_DISTANCES[2], y + BOX_DISTANCES[3]
    centre = np.array([(left + right) / 2, (top + bottom) / 2], dtype=np.float32)
    return centre + LANDMARKS_106 * 0.75 * max(right - left, bottom - top)


def write_landmark_model(model_root: str | Path) -> Path:
    """Write `model_root/models/buffalo_l/2d106det.onnx`: a 192x192-input model that insightface routes to its
    Landmark class and that always answers LANDMARKS_106 (so the landmarks follow the face box)."""
    from onnx import TensorProto, helper, numpy_helper
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "zeros", "landmarks"], ["fc1"]),
    ]
    inits = [numpy_helper.from_array(np.zeros((3, 212), np.float32), "zeros"), numpy_helper.from_array(LANDMARKS_106.reshape(-1), "landmarks")]
    graph = helper.make_graph(
        nodes, "constant_landmarks", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 212])], inits,
    )
    return _save_in_buffalo_l(graph, model_root, "2d106det.onnx")

"""Face keypoints from insightface's `buffalo_l` detector (detection model only)."""

from pathlib import Path

import cv2
import numpy as np

from modules.errors import VExpressError, first_line

DOWNLOAD_HINT = "download it with: python scripts/download_models.py --include insightface_models (see model_ckpts/README.md)"


class FaceError(VExpressError):
    """No usable face, or no detector, with a message for the user."""


class FaceDetector:
    """insightface's FaceAnalysis loading only the models a task needs: by default the detection model alone
    (faces as bbox, det_score, kps (5, 2)); `tasks=None` loads every model in the folder (landmarks, pose,
    gender/age, embedding), `tasks=(...)` those named (insightface task names such as "landmark_2d_106").

    `model_root` is the folder holding `models/buffalo_l/` (the published `--insightface_model_path`);
    `image_size` (width, height) the size of the images it will see.
    Nothing is downloaded: a missing model folder is a FaceError."""

    def __init__(
        self, model_root: str | Path, image_size: tuple[int, int] = (640, 640), device: str = "cpu", gpu_id: int = 0,
        tasks: tuple[str, ...] | None = ("detection",),
    ):
        folder = Path(model_root) / "models" / "buffalo_l"
        if not any(folder.glob("*.onnx")):
            raise FaceError(f"{folder}: no insightface detector (.onnx) found; {DOWNLOAD_HINT}")
        from insightface.app import FaceAnalysis  # imported here: only strategies that need a face pay for it

        on_gpu = device.startswith("cuda")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on_gpu else ["CPUExecutionProvider"]
        allowed = None if tasks is None else sorted(set(tasks) | {"detection"})
        for model in sorted(folder.glob("*.onnx")):  # FaceAnalysis opens every one
            if model.stat().st_size == 0:
                raise FaceError(f"{model}: empty file (0 bytes); {DOWNLOAD_HINT}")
        try:
            self.app = FaceAnalysis(name=str(folder), allowed_modules=allowed, providers=providers)
            self.app.prepare(ctx_id=gpu_id if on_gpu else -1, det_size=tuple(image_size))
        except Exception as error:  # onnxruntime's errors derive from Exception alone; its message names the file
            raise FaceError(f"{folder}: cannot load the face detector ({first_line(error)}); {DOWNLOAD_HINT}") from None
        absent = sorted(set(tasks or ()) - set(self.app.models))
        if absent:
            raise FaceError(f"{folder}: no model for {', '.join(absent)} (buffalo_l's 2d106det.onnx gives landmark_2d_106); {DOWNLOAD_HINT}")

    @property
    def tasks(self) -> list[str]:
        """insightface task names of the loaded models."""
        return sorted(self.app.models)

    def faces(self, image_bgr: np.ndarray) -> list:
        """insightface Face records, largest first."""
        faces = self.app.get(image_bgr)
        return sorted(faces, key=lambda face: -float((face.bbox[2] - face.bbox[0]) * (face.bbox[3] - face.bbox[1])))

    def reference_kps(self, image_path: str | Path, width: int, height: int) -> tuple[np.ndarray, int]:
        """Left eye, right eye, nose (3, 2) float32 of the largest face in the image resized to width x height,
        and how many faces there were."""
        image = cv2.imread(str(image_path))
        if image is None:  # formats OpenCV cannot read (WebP without support, ...): go through PIL
            from PIL import Image

            image = cv2.cvtColor(np.asarray(Image.open(image_path).convert("RGB")), cv2.COLOR_RGB2BGR)
        faces = self.faces(cv2.resize(image, (width, height)))
        if not faces:
            raise FaceError(f"{image_path}: no face found in the reference image; use a photo with one clear, frontal face, or place "
                            'its keypoints by hand: --reference_kps "x1,y1,x2,y2,x3,y3" (left eye, right eye, nose, in its pixels)')
        return faces[0].kps[:3].astype(np.float32), len(faces)

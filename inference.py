"""V-Express: a portrait photo and speech audio (and optionally face keypoints) -> talking-head video.

    python inference.py --reference_image_path face.jpg --audio_path speech.wav --output_path out.mp4

Run again with the same arguments after an interruption: generation resumes from its last saved step.
"""

import argparse
import sys
import warnings


def build_parser() -> argparse.ArgumentParser:
    from app.requests import build_inference_parser

    return build_inference_parser(description=__doc__)


def main(argv=None) -> int:
    try:
        return run(argv)
    except KeyboardInterrupt as interruption:  # Ctrl-C: one line, like an error; generation saved what it had done
        print(str(interruption) or "interrupted; nothing was written", file=sys.stderr)
        return 130


def run(argv) -> int:
    from modules.errors import VExpressError
    from app.generation import VideoGenerator, check_request
    from app.requests import request_from_flags

    flags = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        request = request_from_flags(flags)
        inputs = check_request(request)
        report = VideoGenerator(request).generate(request, inputs)
    except VExpressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if report is not None:
        print("\n".join(report.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

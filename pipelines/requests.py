"""Requests as inference.py's flags, for the scripts that generate videos for someone else (the web UI, batch
generation). A request is an argv list of inference.py flags parsed by inference.py's own parser, so every option
stays available and is checked the same way as on the command line."""

import argparse
import textwrap

from modules.errors import VExpressError

# The flags that name one video's inputs and output: the page or the manifest row gives them.
PER_VIDEO_FLAGS = ("reference_image_path", "audio_path", "kps_path", "reference_video", "output_path")
# Stand-ins for the per-video flags that inference.py requires, to parse the other flags of a command line alone.
PLACEHOLDERS = ["--reference_image_path", "portrait.png", "--audio_path", "speech.wav", "--output_path", "video.mp4"]
ONE_VIDEO_ON_MANY_PROCESSES = "do_multi_devices_inference"  # the one flag these scripts cannot honour


class FlagError(VExpressError):
    """Flags inference.py's parser refuses: an unknown flag, a missing value, a value of the wrong type or choice."""


def raising(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser`, made to raise FlagError where argparse would print its usage and exit: a request that a page or a
    manifest row built is reported there, and the server or the batch goes on."""

    def refuse(message):
        raise FlagError(message)

    parser.error = refuse
    return parser


def request_parser() -> argparse.ArgumentParser:
    """inference.py's parser, raising FlagError."""
    import inference

    return raising(inference.build_parser())


def parse_request(argv: list, switches: dict[str, bool] | None = None) -> argparse.Namespace:
    """inference.py's flags -> the request that `check_request` and `VideoGenerator.generate` take. `switches`
    ({destination: on}) are set either way after parsing: on a command line a flag can only turn a switch on, and a
    page's box or a manifest's column may turn off one that the server's command line turned on."""
    request = request_parser().parse_args([str(arg) for arg in argv])
    for name, on in (switches or {}).items():
        setattr(request, name, on)
    return request


def inference_flags() -> dict[str, argparse.Action]:
    """Every long flag of inference.py, without its dashes (aliases too), in --help order -> its argparse action."""
    return {option[2:]: action for action in request_parser()._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"}


def script_parser(description: str, per_video_flags: bool, passed_on: str) -> argparse.ArgumentParser:
    """The parser of a script that passes inference.py's flags on (see `split_command_line`). Its --help ends with
    those flags, after `passed_on` (what they do there); `per_video_flags` says whether the input and output flags
    are among them."""
    names = [name for name, action in inference_flags().items() if action.dest != ONE_VIDEO_ON_MANY_PROCESSES
             and (per_video_flags or action.dest not in PER_VIDEO_FLAGS)]
    epilog = textwrap.fill(f"Every other flag is an inference.py flag (python inference.py --help says what each does): {passed_on}: "
                           + " ".join(f"--{name}" for name in names), width=100)
    # No abbreviations: unknown flags pass through to inference.py, so a prefix of one must not be taken for ours.
    return argparse.ArgumentParser(description=description, epilog=epilog, allow_abbrev=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def split_command_line(parser: argparse.ArgumentParser, argv=None, per_video_flags: bool = True) -> tuple[argparse.Namespace, list[str]]:
    """(the script's own flags, the rest of its command line: inference.py flags for every video). The rest is
    checked here, once, so that a typo stops the script at its start rather than failing every video; a bad flag
    exits as argparse does (usage, one line, status 2)."""
    own, common = parser.parse_known_args(argv)
    try:
        given, defaults = parse_request(PLACEHOLDERS + common), parse_request(PLACEHOLDERS)
    except FlagError as error:
        parser.error(str(error))
    if getattr(given, ONE_VIDEO_ON_MANY_PROCESSES):
        parser.error(f"--{ONE_VIDEO_ON_MANY_PROCESSES} splits one video across processes; here each process makes "
                     "whole videos, so leave it out")
    named = [name for name in PER_VIDEO_FLAGS if getattr(given, name) != getattr(defaults, name)]
    if named and not per_video_flags:
        parser.error(f"--{named[0]} is given for each video in the page, not on the command line")
    return own, common

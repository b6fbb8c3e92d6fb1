"""A request: every setting of one video in one frozen dataclass, `GenerationRequest`. Each field carries its
default, its range or choices, its help, and whether it changes the video's numbers (the resume fingerprint).
inference.py's parser is generated from it; the web UI and batch generation build requests directly; a request is
checked as it is made, so one that exists is within every limit."""

import argparse
import textwrap
import typing
from dataclasses import dataclass, field, fields, replace

from modules.errors import VExpressError
from motion.plan import HEAD_MOTIONS, KPS_FITS, MAX_HEAD_MOTION_STRENGTH
from motion.retarget import RETARGET_STRATEGIES
from media.voice_activity import MOUTHS_IN_SILENCE
from pipelines.loading import SCHEDULERS, ModelPaths
from pipelines.pipeline_v_express import MAX_CONTEXT_FRAMES


class InputError(VExpressError):
    """A request that cannot be generated: a setting out of range, an unusable file, an output another run writes."""


class FlagError(VExpressError):
    """Flags inference.py's parser refuses: an unknown flag, a missing value, a value of the wrong type or choice."""


# The settings a preset stands for; any of them given explicitly wins.
PRESETS = {
    "published": dict(scheduler="ddim", num_inference_steps=25, guidance_interval=(0.0, 1.0), cache_interval=1),
    "balanced": dict(scheduler="ddim", num_inference_steps=12, guidance_interval=(0.2, 1.0), cache_interval=1),
    "fast": dict(scheduler="dpmpp_2m", num_inference_steps=8, guidance_interval=(0.2, 1.0), cache_interval=2),
}
CHANGES_NUMBERS = "opt-in, changes the video"
SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True, "y": True, "": False, "0": False, "false": False,
                 "no": False, "off": False, "n": False}  # a switch's values as text (a manifest's cell)
INPUTS, GENERATION, MOTION, SPEED, RUNTIME = ("inputs and output", "generation", "motion (opt-in; the defaults are the published behaviour)",
                                              "speed (docs/speed.md)", "device and memory")


def setting(default, help: str = "", *, group: str, video: bool, flags: tuple = (), range: tuple | None = None,
            choices: tuple | None = None, multiple_of: int | None = None, metavar=None, required: bool = False):
    """A request field. video: whether the setting changes the video's numbers (beyond float rounding): those make
    the resume fingerprint, so a run resumes only under the same ones. flags: other names of its flag. required:
    inference.py's parser asks for it (a request made in code may leave it for `check_request` to name)."""
    return field(default=default, metadata=dict(help=help, group=group, video=video, flags=flags, range=range, choices=choices,
                                                multiple_of=multiple_of, metavar=metavar, required=required))


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one video is made from, as inference.py's flags name it."""

    reference_image_path: str | None = setting(None, "portrait photo (JPG, PNG, BMP, WebP, ...)", group=INPUTS, video=True, flags=("--reference_image",), required=True)
    audio_path: str | None = setting(None, "speech (WAV, MP3, FLAC, M4A, OGG, or a video with sound)", group=INPUTS, video=True, flags=("--audio",), required=True)
    kps_path: str | None = setting(None, "driving keypoint sequence (scripts/extract_kps_sequence_and_audio.py writes one)", group=INPUTS, video=True)
    reference_video: str | None = setting(None, "driving video: its keypoint sequence is extracted on the fly and used as --kps_path", group=INPUTS, video=True)
    reference_kps: str | None = setting(
        None, 'left eye, right eye and nose placed by hand, in the portrait\'s pixels: "x1,y1,x2,y2,x3,y3" or a JSON file; replaces face '
        "detection (stylised faces, drawings, masks)", group=INPUTS, video=True)
    face_index: int = setting(0, "which face of a photo with several: 0 the largest, 1 the next, ...", group=INPUTS, video=True, range=(0, 99))
    paste_back: bool = setting(False, "generate from a square crop around the face and paste each frame back into the photo: "
                               "the video keeps the photo's size and aspect ratio", group=INPUTS, video=True)
    max_output_side: int | None = setting(None, "with --paste_back: the video's longer side at most this (default: the photo's)",
                                          group=INPUTS, video=True, range=(64, 8192))
    no_provenance: bool = setting(False, "leave out the marks that say the video is AI-generated (IPTC's digital source type in its "
                                  "XMP, and a signed C2PA manifest; docs/provenance.md)", group=INPUTS, video=False)
    c2pa_cert: str | None = setting(None, "the C2PA signing certificate chain (PEM; default: one made once on this machine)", group=INPUTS, video=False)
    c2pa_key: str | None = setting(None, "the private key of --c2pa_cert (PEM)", group=INPUTS, video=False)
    output_path: str | None = setting(None, "the MP4 to write", group=INPUTS, video=False, flags=("--output",), required=True)

    retarget_strategy: str = setting("no_retarget", "how driving keypoints map onto the portrait", group=GENERATION, video=True, choices=RETARGET_STRATEGIES)
    num_inference_steps: int | None = setting(None, "denoising steps (default 25, or the preset's)", group=GENERATION, video=True, range=(1, 1000))
    guidance_scale: float = setting(3.5, group=GENERATION, video=True, range=(0.0, 30.0))
    reference_attention_weight: float = setting(1.0, "identity strength (published default 0.95)", group=GENERATION, video=True, range=(0.0, 10.0))
    audio_attention_weight: float = setting(1.0, "lip-sync strength (published default 3.0)", group=GENERATION, video=True, range=(0.0, 10.0))
    expression_strength: float = setting(1.0, "multiplies --audio_attention_weight", group=GENERATION, video=True, range=(0.0, 10.0))
    image_width: int = setting(512, group=GENERATION, video=True, range=(64, 4096), multiple_of=8)
    image_height: int = setting(512, group=GENERATION, video=True, range=(64, 4096), multiple_of=8)
    fps: float = setting(30.0, group=GENERATION, video=True, range=(1.0, 120.0))
    seed: int = setting(42, group=GENERATION, video=True, range=(0, 2**63 - 1))
    context_frames: int = setting(24, group=GENERATION, video=True, range=(1, MAX_CONTEXT_FRAMES))
    context_overlap: int = setting(4, "frames two windows share (smaller than --context_frames)", group=GENERATION, video=True)
    num_pad_audio_frames: int = setting(2, group=GENERATION, video=True, range=(0, 2))
    standard_audio_sampling_rate: int = setting(16000, "must be the audio encoder's rate (16000)", group=GENERATION, video=True, range=(1, 192000))
    audio_embeddings_type: str = setting("global", group=GENERATION, video=True, choices=("global",))
    test_stage: str = setting("stage_3", group=GENERATION, video=True, choices=("stage_1", "stage_2", "stage_3"))
    no_median_filter: bool = setting(False, "skip the 3x3x3 flicker filter", group=GENERATION, video=False)

    kps_fit: str = setting("stretch", f"how a driving sequence covers the video (default stretch, published; the others {CHANGES_NUMBERS})", group=MOTION, video=True, choices=KPS_FITS)
    head_motion: str = setting("none", f"natural: a speech-driven head motion for a still portrait ({CHANGES_NUMBERS})", group=MOTION, video=True, choices=HEAD_MOTIONS)
    head_motion_strength: float = setting(1.0, "scales --head_motion natural", group=MOTION, video=True, range=(0.0, MAX_HEAD_MOTION_STRENGTH))
    mouth_in_silence: str = setting("published", f"rest: each silence of 0.3 s or more that voice-activity detection finds is drawn from one "
                                    f"still condition (its middle frame's audio tokens and noise), eased into and out of ({CHANGES_NUMBERS})",
                                    group=MOTION, video=True, choices=MOUTHS_IN_SILENCE)

    preset: str = setting("published", f"scheduler, steps, guidance interval and cache together ({CHANGES_NUMBERS} unless published)", group=SPEED, video=True, choices=tuple(PRESETS))
    scheduler: str | None = setting(None, f"ddim (published), dpmpp_2m or unipc ({CHANGES_NUMBERS})", group=SPEED, video=True, choices=SCHEDULERS)
    guidance_interval: tuple[float, float] | None = setting(
        None, f"classifier-free guidance only on the steps in [START, END) of the schedule, fractions (default 0 1; {CHANGES_NUMBERS})",
        group=SPEED, video=True, metavar=("START", "END"))
    cache_interval: int | None = setting(None, f"DeepCache: full UNet every N steps, its shallow branch in between (default 1: off; {CHANGES_NUMBERS})", group=SPEED, video=True, range=(1, 1000))
    context_batch_size: int = setting(1, "context windows per UNet call (same video)", group=SPEED, video=True, range=(1, 64))
    compile: bool = setting(False, "torch.compile the denoising UNet (same video; the first window pays a warm-up)", group=SPEED, video=True)
    decode_batch_frames: int | None = setting(None, "frames per VAE decode (default: what fits in memory)", group=SPEED, video=False, range=(1, 4096))

    device: str = setting("auto", "auto (CUDA, else MPS, else CPU), cuda, mps or cpu", group=RUNTIME, video=False, choices=("auto", "cuda", "mps", "cpu"))
    gpu_id: int = setting(0, group=RUNTIME, video=False, range=(0, 1023))
    dtype: str | None = setting(None, "default: fp16 on CUDA/MPS, fp32 on CPU", group=RUNTIME, video=True, choices=("fp16", "bf16", "fp32"))
    save_gpu_memory: bool = setting(False, "offload finished networks, keep latents on the CPU, decode frame by frame", group=RUNTIME, video=False)
    do_multi_devices_inference: bool = setting(False, "with `accelerate launch`: split the windows of each step across processes", group=RUNTIME, video=True)
    resume_interval: float = setting(60.0, "seconds between saves of the resume state beside the output (0: every step)", group=RUNTIME, video=False, range=(0.0, 1e9))

    weights: ModelPaths = field(default_factory=ModelPaths)  # one flag per path (the weights group); in the fingerprint by size
    preset_filled: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)  # what --preset gave

    def __post_init__(self):
        for name, f in SETTINGS.items():
            object.__setattr__(self, name, _typed(f, getattr(self, name)))
        filled = {name: value for name, value in PRESETS[self.preset].items() if getattr(self, name) is None}
        for name, value in filled.items():  # what the preset stands for, where nothing else was given
            object.__setattr__(self, name, value)
        object.__setattr__(self, "preset_filled", frozenset(filled))
        if not 0 <= self.context_overlap < self.context_frames:
            raise InputError(f"--context_overlap {self.context_overlap}: must be at least 0 and smaller than --context_frames ({self.context_frames})")
        start, end = self.guidance_interval
        if not 0 <= start < end <= 1:
            raise InputError(f"--guidance_interval {start:g} {end:g}: needs 0 <= START < END <= 1 (fractions of the denoising steps)")

    def replace(self, **changes) -> "GenerationRequest":
        """This request with `changes` (fields, or weight paths by their flag names), checked again. What the preset
        filled in is filled again from the preset then in force, as if the flags had been given together."""
        weights = {name: changes.pop(name) for name in list(changes) if name in WEIGHT_FIELDS}
        if weights:
            changes["weights"] = replace(self.weights, **weights)
        return replace(self, **{**dict.fromkeys(self.preset_filled), **changes})

    def video_settings(self) -> dict:
        """The settings that change the video's numbers, by name: what a resume state must have been made with."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("video")}


SETTINGS = {f.name: f for f in fields(GenerationRequest) if "group" in f.metadata}  # every field but the weights and bookkeeping


def _base_type(f) -> type:
    """int, float, str, bool or tuple: a field's type without its `| None`."""
    kinds = [kind for kind in typing.get_args(f.type) or (f.type,) if kind is not type(None)]
    return typing.get_origin(kinds[0]) or kinds[0]


def _typed(f, value):
    """A field's value in its own type (the page's 25.0 for an integer, a manifest cell's text, a JSON list), or an
    InputError naming the flag when it is none of those, or outside its range or choices (NaN is in no range)."""
    kind, meta, given = _base_type(f), f.metadata, value
    if value is None:
        if f.default is None:
            return None
        raise InputError(f"--{f.name}: needs a value")
    try:
        if kind is bool:
            value = SWITCH_VALUES[value.strip().lower()] if isinstance(value, str) else value
            if not isinstance(value, bool):
                raise ValueError
        elif kind is tuple:
            value = tuple(float(item) for item in (value.split() if isinstance(value, str) else value))
            if len(value) != 2:
                raise ValueError
        elif kind is int:
            number = float(value) if isinstance(value, (str, float)) else value
            if isinstance(number, bool) or not float(number).is_integer():
                raise ValueError
            value = int(number)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        else:
            value = str(value)
    except (ValueError, TypeError, KeyError, OverflowError):
        expected = {bool: "true or false", tuple: "two numbers", int: "an integer", float: "a number"}[kind]
        raise InputError(f"--{f.name} {given!r}: give {expected}") from None
    if meta["range"] and not meta["range"][0] <= value <= meta["range"][1]:
        raise InputError(f"--{f.name} {value}: must be between {meta['range'][0]} and {meta['range'][1]}")
    if meta["multiple_of"] and value % meta["multiple_of"]:
        raise InputError(f"--{f.name} {value}: must be a multiple of {meta['multiple_of']} (the VAE's scale)")
    if meta["choices"] and value not in meta["choices"]:
        raise InputError(f"--{f.name} {value!r} is unknown; choose one of {', '.join(meta['choices'])}")
    return value


WEIGHT_FIELDS = tuple(f.name for f in fields(ModelPaths))
SETTING_RANGES = {name: f.metadata["range"] for name, f in SETTINGS.items() if f.metadata["range"]}  # the web UI's sliders

# The flags that name one video's inputs and output: the page or the manifest row gives them.
PER_VIDEO_FLAGS = ("reference_image_path", "audio_path", "kps_path", "reference_video", "reference_kps", "output_path")
# Stand-ins for the per-video flags that inference.py requires, to parse the other flags of a command line alone.
PLACEHOLDERS = ["--reference_image_path", "portrait.png", "--audio_path", "speech.wav", "--output_path", "video.mp4"]
ONE_VIDEO_ON_MANY_PROCESSES = "do_multi_devices_inference"  # the one flag these scripts cannot honour


def build_inference_parser(description: str | None = None) -> argparse.ArgumentParser:
    """inference.py's flags, one per GenerationRequest field (and one per weight path), in its order and groups. The
    parser only turns text into numbers; the request checks ranges and choices, so each limit lives in its field."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {}
    for name, f in SETTINGS.items():
        meta, kind = f.metadata, _base_type(f)
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        notes = [meta["help"]] if meta["help"] else []
        if meta["choices"]:
            notes.append(f"one of {', '.join(meta['choices'])}")
        if meta["range"]:
            notes.append(f"{meta['range'][0]} to {meta['range'][1]}")
        if f.default not in (None, False) and "default" not in meta["help"]:
            notes.append(f"default {f.default}")
        options = dict(dest=name, help="; ".join(notes) or None)
        if kind is bool:
            options.update(action="store_true")
        else:
            options.update(default=f.default, required=meta["required"], metavar=meta["metavar"])
            if kind is tuple:
                options.update(type=float, nargs=2)
            elif kind in (int, float):
                options.update(type=kind)
        group.add_argument(f"--{name}", *meta["flags"], **options)
    weights = parser.add_argument_group("weights")
    for f in fields(ModelPaths):
        weights.add_argument(f"--{f.name}", default=f.default)
    return parser


def request_from_flags(namespace: argparse.Namespace) -> GenerationRequest:
    """inference.py's parsed flags -> the request (InputError for a setting out of its range or choices)."""
    values = vars(namespace)
    return GenerationRequest(**{name: values[name] for name in SETTINGS}, weights=ModelPaths(**{name: values[name] for name in WEIGHT_FIELDS}))


def raising(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser`, made to raise FlagError where argparse would print its usage and exit: flags that a server's or a
    batch's command line gives are reported by the script that parses them."""

    def refuse(message):
        raise FlagError(message)

    parser.error = refuse
    return parser


def parse_request(argv: list) -> GenerationRequest:
    """inference.py's flags -> a request; FlagError for flags the parser refuses, InputError for values out of range."""
    return request_from_flags(raising(build_inference_parser()).parse_args([str(arg) for arg in argv]))


def inference_flags() -> dict[str, str]:
    """Every long flag of inference.py without its dashes (aliases too), in --help order -> the field it sets (a
    weight path's own name for those)."""
    flags = {}
    for action in build_inference_parser()._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                flags[option[2:]] = action.dest
    return flags


def script_parser(description: str, per_video_flags: bool, passed_on: str) -> argparse.ArgumentParser:
    """The parser of a script that passes inference.py's flags on (see `split_command_line`). Its --help ends with
    those flags, after `passed_on` (what they do there); `per_video_flags` says whether the input and output flags
    are among them."""
    names = [name for name, dest in inference_flags().items() if dest != ONE_VIDEO_ON_MANY_PROCESSES
             and (per_video_flags or dest not in PER_VIDEO_FLAGS)]
    epilog = textwrap.fill(f"Every other flag is an inference.py flag (python inference.py --help says what each does): {passed_on}: "
                           + " ".join(f"--{name}" for name in names), width=100)
    # No abbreviations: unknown flags pass through to inference.py, so a prefix of one must not be taken for ours.
    return argparse.ArgumentParser(description=description, epilog=epilog, allow_abbrev=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def split_command_line(parser: argparse.ArgumentParser, argv=None, per_video_flags: bool = True) -> tuple[argparse.Namespace, GenerationRequest]:
    """(the script's own flags, the request the rest of its command line makes: inference.py's flags, defaults for
    every video). They are checked here, once, so that a typo stops the script at its start rather than failing
    every video; a bad flag exits as argparse does (usage, one line, status 2)."""
    own, common = parser.parse_known_args(argv)
    try:
        given = parse_request(PLACEHOLDERS + common)
    except VExpressError as error:
        parser.error(str(error))
    if getattr(given, ONE_VIDEO_ON_MANY_PROCESSES):
        parser.error(f"--{ONE_VIDEO_ON_MANY_PROCESSES} splits one video across processes; here each process makes "
                     "whole videos, so leave it out")
    options = {token.split("=", 1)[0] for token in common if token.startswith("--")}
    named = [name for name in PER_VIDEO_FLAGS if options & {f"--{name}", *SETTINGS[name].metadata["flags"]}]
    if named and not per_video_flags:
        parser.error(f"--{named[0]} is given for each video in the page, not on the command line")
    return own, given.replace(**{name: None for name in PER_VIDEO_FLAGS if name not in named})  # no stand-in is left

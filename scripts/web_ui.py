"""V-Express in the browser: upload a portrait and speech, preview the keypoints, generate, watch and download.

    pip install -r requirements-ui.txt
    python scripts/web_ui.py                       # then open http://127.0.0.1:7860
    python scripts/web_ui.py --host 0.0.0.0 --port 8080 --unet_config_path ... (inference.py's weight flags)

The networks load once, at start; one video is generated at a time and other requests wait in a queue. Videos
are kept in --output_dir. Nothing leaves the machine: no analytics, no share link.
"""

import inspect
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.requests import script_parser, split_command_line  # noqa: E402

INSTALL_HINT = "error: the web UI needs Gradio, which the CLI does not install: pip install -r requirements-ui.txt"


def build_parser():
    parser = script_parser(__doc__, per_video_flags=False, passed_on="the weights and the device, and the page's initial "
                           "settings (what the page does not show applies to every video)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: every network interface)")
    parser.add_argument("--port", type=int, default=7860, help="default 7860")
    parser.add_argument("--output_dir", default="outputs/web_ui", help="where the videos are written and kept")
    return parser


def check_address(host: str, port: int) -> None:
    """OSError now, before the networks load, if the server could not listen on host:port (taken, not this machine's)."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: a port just closed is free
        probe.bind(address)


def named_signature(function, defaults: dict) -> inspect.Signature:
    """`function`'s signature with its *values spelled out as `defaults` ({name: default}): what Gradio's API shows as
    the parameters, each optional as on the page."""
    keyword_only = [p for p in inspect.signature(function).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    named = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value) for name, value in defaults.items()]
    return inspect.Signature(named + keyword_only)


def build_page(gr, app):
    """The page: inputs on the left, the keypoint preview, the video and the messages on the right."""
    from app.requests import PRESETS, SETTING_RANGES
    from media.voice_activity import MOUTHS_IN_SILENCE
    from motion.plan import HEAD_MOTIONS, KPS_FITS
    from motion.retarget import RETARGET_STRATEGIES

    defaults = app.defaults
    # delete_cache: Gradio keeps every upload and every video it served; drop those a day old, once a day.
    with gr.Blocks(title="V-Express", analytics_enabled=False, delete_cache=(86400, 86400)) as page:
        gr.Markdown("## V-Express\nA portrait and speech (and optionally a driving video or keypoint file) make a talking-head video.")
        with gr.Row():
            with gr.Column():
                portrait = gr.File(label="Portrait (JPG, PNG, BMP or WebP)", elem_id="portrait")
                portrait_view = gr.Image(label="Click the left eye, the right eye and the nose to place the keypoints by hand",
                                         interactive=False, visible=False, elem_id="portrait_view")
                hand_kps = gr.Textbox(label="Keypoints by hand (optional): x1,y1,x2,y2,x3,y3 in the portrait's pixels (no face found: "
                                      "place them here)", elem_id="reference_kps")
                audio = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath", buttons=["download"], elem_id="audio")
                driving = gr.File(label="Driving video or keypoint file (optional)", elem_id="driving")
                settings = {  # inference.py flag -> its widget
                    "reference_kps": hand_kps,
                    "face_index": gr.Number(value=defaults.face_index, precision=0, minimum=0, label="Face (of a photo with several; 0: the largest)"),
                    "retarget_strategy": gr.Dropdown(list(RETARGET_STRATEGIES), value=defaults.retarget_strategy, label="Retarget strategy"),
                    "kps_fit": gr.Dropdown(list(KPS_FITS), value=defaults.kps_fit, label="Driving sequence fit (when shorter than the speech)"),
                    "head_motion": gr.Dropdown(list(HEAD_MOTIONS), value=defaults.head_motion, label="Head motion (natural: from the speech)"),
                    "head_motion_strength": gr.Slider(*SETTING_RANGES["head_motion_strength"], value=defaults.head_motion_strength, step=0.1,
                                                      label="Head motion strength"),
                    "mouth_in_silence": gr.Dropdown(list(MOUTHS_IN_SILENCE), value=defaults.mouth_in_silence,
                                                    label="Mouth in silences (rest: closes and stays still in pauses)"),
                    "preset": gr.Dropdown(list(PRESETS), value=defaults.preset, label="Speed preset (docs/speed.md)"),
                    "reference_attention_weight": gr.Slider(*SETTING_RANGES["reference_attention_weight"], value=defaults.reference_attention_weight, step=0.05,
                                                            label="Identity strength (reference attention weight)"),
                    "audio_attention_weight": gr.Slider(*SETTING_RANGES["audio_attention_weight"], value=defaults.audio_attention_weight, step=0.05,
                                                        label="Lip-sync strength (audio attention weight)"),
                    "num_inference_steps": gr.Slider(1, max(100, defaults.num_inference_steps), value=defaults.num_inference_steps, step=1,
                                                     label="Denoising steps"),
                    "guidance_scale": gr.Slider(*SETTING_RANGES["guidance_scale"], value=defaults.guidance_scale, step=0.1, label="Guidance scale"),
                    "seed": gr.Number(value=defaults.seed, precision=0, label="Seed"),
                    "paste_back": gr.Checkbox(value=defaults.paste_back, label="Keep the whole picture (generate the face, paste it back)"),
                    "save_gpu_memory": gr.Checkbox(value=defaults.save_gpu_memory,
                                                   label="Save GPU memory (slower: offloads networks, decodes frame by frame)"),
                }
                with gr.Row():
                    preview_button = gr.Button("Preview keypoints", elem_id="preview_button")
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate_button")
            with gr.Column():
                preview = gr.Image(label="Keypoints: portrait, V-Kps image, overlay", interactive=False, elem_id="preview")
                video = gr.Video(label="Video", interactive=False, buttons=["download"], elem_id="video")
                messages = gr.Textbox(label="Messages", lines=4, interactive=False, elem_id="messages")

        # Named parameters for Gradio's API (and gradio_client): the inputs in this order, each called by its name.
        inputs = [portrait, audio, driving, *settings.values()]
        parameters = {"portrait": None, "audio": None, "driving": None, **{name: widget.value for name, widget in settings.items()}}

        def page_values(values: tuple) -> tuple:
            return values[0], values[1], values[2], dict(zip(settings, values[3:]))

        def generate(*values, progress=gr.Progress()):
            def show(done, total, what):
                progress((done, total) if total else 0.0, desc=what)  # no total yet: an empty bar and what is going on

            return app.generate_with_progress(*page_values(values), show=show)

        def show_preview(*values):
            return app.preview(*page_values(values))

        for function in (generate, show_preview):
            function.__signature__ = named_signature(function, parameters)

        def steps_of_preset(preset):
            return gr.Slider(value=PRESETS[preset]["num_inference_steps"])

        def show_portrait(path):  # a new portrait: the points placed on the last one are gone
            return gr.Image(value=path, visible=bool(path)), ""

        def place_point(typed: str, event: gr.SelectData):
            """A click on the portrait: its point after those already placed; a fourth click starts a new triple."""
            numbers = [part for part in (typed or "").replace(" ", "").split(",") if part]
            points = [numbers[i:i + 2] for i in range(0, len(numbers) - 1, 2)] if len(numbers) < 6 else []
            return ",".join(sum(points, []) + [str(round(event.index[0])), str(round(event.index[1]))])

        portrait.change(show_portrait, portrait, [portrait_view, hand_kps], api_name=False)
        portrait_view.select(place_point, hand_kps, hand_kps, api_name=False)
        settings["preset"].change(steps_of_preset, settings["preset"], settings["num_inference_steps"], api_name=False)
        preview_button.click(show_preview, inputs, [preview, messages], api_name="preview")
        generate_button.click(generate, inputs, [video, messages], concurrency_limit=1, api_name="generate")  # one video at a time; others queue
    return page


def main(argv=None) -> int:
    args, defaults = split_command_line(build_parser(), argv, per_video_flags=False)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before Gradio is imported: it reads this at import
    try:
        import gradio as gr
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    import warnings

    from modules.errors import VExpressError
    from app.web_ui import WebGenerator

    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        check_address(args.host, args.port)  # before the networks load
    except OSError as error:
        return cannot_serve(args.host, args.port, error)
    try:
        app = WebGenerator(defaults, args.output_dir)
        print("loading the networks ...", file=sys.stderr)
        app.load()
    except VExpressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    page = build_page(gr, app).queue()
    system_fonts = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])  # no web fonts
    try:
        _, url, _ = page.launch(
            server_name=args.host, server_port=args.port, share=False, theme=system_fonts, allowed_paths=[str(app.output_dir)],
            run_history=False, enable_monitoring=False, mcp_server=False, ssr_mode=False, pwa=False, quiet=True, prevent_thread_lock=True,
        )
    except OSError as error:  # the address, taken since it was checked
        return cannot_serve(args.host, args.port, error)
    print(f"serving on {url} (Ctrl+C stops)", file=sys.stderr)
    page.block_thread()  # until Ctrl+C
    if app.busy:
        # The generation's thread is inside torch: tearing the interpreter down under it would abort the process.
        print("stopped during a generation: its video was not written", file=sys.stderr)
        os._exit(130)
    return 0


def cannot_serve(host: str, port: int, error: OSError) -> int:
    print(f"error: cannot serve on {host}:{port} ({error.strerror or error}); give another --port or --host", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""scripts/web_ui.py as a user meets it: the server started as a real process with tiny checkpoints, driven in
headless Chromium (Debian's, through Playwright): upload, preview, generate, watch the progress, play and download
the video; a bad portrait shows the CLI's one-line message; two visitors queue for one generation at a time.
One server and one browser serve every test of the module."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scripts.web_ui as web_ui_script
from helpers.cli import ROOT, SIZE, free_port, inspect_mp4, make_inputs, make_model_ckpts, weight_flags
from pipelines.context import num_frames_for_audio, video_length

SECONDS = 1.5
FRAMES = video_length(num_frames_for_audio(SECONDS, 30))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # this machine has no network beyond loopback
STEPS = 3  # set on the page; two context windows of 44 frames make it 6 UNet calls


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web_ui")
    (folder / "notes.txt").write_text("not a photo\n")
    return dict(make_inputs(folder, SECONDS), ckpts=make_model_ckpts(folder / "model_ckpts"), folder=folder, text=folder / "notes.txt")


@pytest.fixture(scope="module")
def server(files):
    """The web UI on a free port, with tiny checkpoints, at 64x64: (its URL, its process)."""
    port = free_port()
    log = open(files["folder"] / "server.log", "w+")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "web_ui.py"), "--port", str(port), "--output_dir", str(files["folder"] / "videos"),
         "--image_width", str(SIZE), "--image_height", str(SIZE), *map(str, weight_flags(files["ckpts"]))],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT)),
    )
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            log.seek(0)
            assert process.poll() is None and time.monotonic() < deadline, f"the web UI did not start:\n{log.read()[-3000:]}"
            time.sleep(0.2)
    yield url, process
    process.send_signal(signal.SIGINT)  # what Ctrl+C sends
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, server):
    """open_page() -> a fresh tab on the web UI; every request a tab makes is recorded to check that none leaves."""
    url, _ = server
    pages, requests = [], []

    def open_one():
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(url)
        page.wait_for_selector("#generate_button")
        pages.append(page)
        return page

    yield open_one
    for page in pages:
        page.close()
    outside = [u for u in requests if not u.startswith((url, "data:", "blob:"))]
    assert not outside, f"the page reached outside this machine: {outside[:5]}"


def upload(page, portrait, audio=None, driving=None):
    for component, path in (("portrait", portrait), ("audio", audio), ("driving", driving)):
        if path:
            page.locator(f"#{component} input[type=file]").set_input_files(str(path))
            page.wait_for_selector(f"#{component} a[download]", timeout=30000)  # uploaded: the component links to the file


def set_steps(page, steps: int):
    box = page.get_by_label("Denoising steps").first
    box.fill(str(steps))
    box.press("Enter")


def messages(page) -> str:
    return page.locator("#messages textarea").input_value()


def fetch(url: str, path: Path) -> Path:
    with urllib.request.urlopen(url, timeout=30) as response:
        path.write_bytes(response.read())
    return path


def wait_for_video(page, timeout_s=120) -> str:
    """The src of the page's <video> once the generation has put one there (fails with the page's messages)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        video = page.locator("#video video")
        if video.count() and video.get_attribute("src"):
            return video.get_attribute("src")
        assert "error:" not in messages(page), messages(page)
        time.sleep(0.1)
    pytest.fail(f"no video after {timeout_s} s; messages: {messages(page)!r}")


def loading_seconds(summary: str) -> float:
    """The summary's "loading" phase: 0.00 when the networks were already loaded (a GIL switch on a busy machine can
    make it 0.01)."""
    return float(re.search(r"loading (\d+\.\d+)", summary).group(1))


def test_generate_in_the_browser(open_page, files):
    """Upload the samples, preview the keypoints, set the steps, generate: progress shows, then the video plays
    in the page with every frame the speech asks for, and the download link gives the same file."""
    page = open_page()
    assert page.locator("#audio button[aria-label='Record audio']").count() == 1  # the speech can be recorded too
    upload(page, files["image"], files["audio"], files["kps"])

    page.click("#preview_button")
    page.wait_for_selector("#preview img", timeout=60000)
    preview = Image.open(fetch(page.locator("#preview img").get_attribute("src"), files["folder"] / "preview.webp"))
    assert preview.size == (3 * SIZE, SIZE)  # portrait | V-Kps image | overlay
    assert np.asarray(preview.convert("RGB"))[:, SIZE:2 * SIZE].max() > 100  # the keypoints are drawn
    assert messages(page) == f"keypoints of the first of {FRAMES} frames"

    set_steps(page, STEPS)
    page.click("#generate_button")
    page.locator("#video").get_by_text(re.compile("denoising")).wait_for(timeout=60000)  # the progress bar
    source = wait_for_video(page)

    video = inspect_mp4(fetch(source, files["folder"] / "from_page.mp4"))
    assert video["num_frames"] == FRAMES and video["size"] == (SIZE, SIZE) and video["audio_codec"] == "aac"
    assert video["duration"] == pytest.approx(SECONDS, abs=0.05)
    text = messages(page)
    assert f"{FRAMES} frames (counted in the file)" in text and "strategy no_retarget" in text
    assert f"; {STEPS * 2} UNet calls" in text  # the page's steps reached the generation
    assert loading_seconds(text) < 0.1  # the networks were loaded at start and kept
    download = page.locator("#video a[download]")
    assert download.get_attribute("download").endswith(".mp4")
    assert fetch(download.get_attribute("href"), files["folder"] / "downloaded.mp4").read_bytes() == (files["folder"] / "from_page.mp4").read_bytes()
    assert page.locator("#video video").evaluate("v => v.readyState >= 1 && v.duration > 1")  # the browser can play it
    written = list((files["folder"] / "videos").glob("*.mp4"))
    assert len(written) == 1 and inspect_mp4(written[0])["num_frames"] == FRAMES  # kept in --output_dir


def test_clicks_on_the_portrait_place_the_keypoints_by_hand(open_page, files):
    """The portrait shows once uploaded; three clicks give the three points in its own pixels, a fourth starts
    again (the page's request takes them: test_page_values_become_an_inference_request)."""
    page = open_page()
    upload(page, files["image"], files["audio"])
    image = page.locator("#portrait_view img")
    image.wait_for(timeout=30000)
    box = image.bounding_box()
    clicks = [(0.25, 0.3), (0.75, 0.3), (0.5, 0.6)]
    for fx, fy in clicks:
        image.click(position={"x": fx * box["width"], "y": fy * box["height"]})
        page.wait_for_function("n => document.querySelector('#reference_kps textarea, #reference_kps input').value.split(',').length === n",
                               arg=2 * (clicks.index((fx, fy)) + 1), timeout=30000)
    placed = np.array([float(v) for v in page.locator("#reference_kps textarea, #reference_kps input").first.input_value().split(",")]).reshape(3, 2)
    assert np.allclose(placed, np.array(clicks) * SIZE, atol=2)  # the portrait's pixels (64x64 here), wherever it is shown
    image.click(position={"x": 0.5 * box["width"], "y": 0.5 * box["height"]})
    page.wait_for_function("() => document.querySelector('#reference_kps textarea, #reference_kps input').value.split(',').length === 2",
                           timeout=30000)  # a fourth click: a new triple begins


def choose(page, label: str, option: str):
    """Pick `option` in the page's dropdown labelled `label`."""
    page.get_by_label(label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_the_new_controls_reach_the_video(open_page, files):
    """A preset sets the steps; head motion, the strategy and paste-back go with the request: a 96x64 photo gives a
    96x64 video with paste-back on; the photo checks' advice (two faces) shows in the messages."""
    photo = np.full((64, 96, 3), 150, np.uint8)
    photo[24:40, 52:68] = photo[24:40, 4:20] = (0, 255, 0)  # two marker faces (as helpers.marker_detector draws them)
    Image.fromarray(photo).save(files["folder"] / "wide.png")
    page = open_page()
    upload(page, files["folder"] / "wide.png", files["audio"])
    choose(page, "Speed preset (docs/speed.md)", "fast")
    page.wait_for_function("() => [...document.querySelectorAll('input[type=number]')].some(box => box.value === '8')", timeout=30000)
    set_steps(page, 1)
    choose(page, "Head motion (natural: from the speech)", "natural")
    choose(page, "Retarget strategy", "fix_face")
    page.get_by_label("Keep the whole picture (generate the face, paste it back)").check()
    page.click("#generate_button")
    source = wait_for_video(page)
    assert inspect_mp4(fetch(source, files["folder"] / "wide_from_page.mp4"))["size"] == (96, 64), messages(page)
    assert "96x64" in messages(page) and "strategy fix_face" in messages(page)
    assert "note: 2 faces in" in messages(page) and "--face_index N picks another" in messages(page)  # a photo check, on the page


def test_gradio_api_takes_named_parameters(server, files):
    """gradio_client, as README shows it: the page's controls are the API's named parameters."""
    from gradio_client import Client, handle_file

    url, _ = server
    client = Client(url, verbose=False)
    parameters = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]]
    assert parameters[:3] == ["portrait", "audio", "driving"] and {"num_inference_steps", "head_motion", "preset", "paste_back",
                                                                   "mouth_in_silence"} <= set(parameters)
    video, text = client.predict(portrait=handle_file(str(files["image"])), audio=handle_file(str(files["audio"])), num_inference_steps=1,
                                 retarget_strategy="fix_face", api_name="/generate")
    assert inspect_mp4(Path(video["video"] if isinstance(video, dict) else video))["num_frames"] == FRAMES, text
    assert "strategy fix_face" in text


def test_a_text_file_as_portrait_shows_the_cli_message(open_page, files):
    page = open_page()
    upload(page, files["text"], files["audio"])
    page.click("#generate_button")
    page.wait_for_function("() => document.querySelector('#messages textarea').value.includes('error:')", timeout=60000)
    text = messages(page)
    assert re.fullmatch(r"error: \S+notes\.txt: cannot open the reference image \(.*\); use a JPG, PNG, BMP or WebP photo", text), text
    assert page.locator("#video video").count() == 0


def test_two_visitors_queue_for_one_generation_at_a_time(open_page, files):
    first, second = open_page(), open_page()
    for page in (first, second):
        upload(page, files["image"], files["audio"])
        set_steps(page, STEPS)
    first.click("#generate_button")
    second.click("#generate_button")
    second.locator("#video").get_by_text(re.compile("queue")).wait_for(timeout=60000)  # waits its turn, says so
    sources = {wait_for_video(first), wait_for_video(second)}
    assert len(sources) == 2  # two videos, neither overwrote the other
    for page in (first, second):
        assert loading_seconds(messages(page)) < 0.1 and "strategy fix_face" in messages(page)


def test_page_values_become_an_inference_request(files):
    """Without a browser: how the page's values become a request (the rest of the tests use the page)."""
    from app.requests import PRESETS, GenerationRequest, InputError
    from app.web_ui import PageError, WebGenerator
    from pipelines.loading import ModelPaths

    command_line = GenerationRequest(save_gpu_memory=True, preset="fast", weights=ModelPaths.under(files["ckpts"]))
    app = WebGenerator(command_line, files["folder"] / "unit")
    assert app.defaults.num_inference_steps == PRESETS["fast"]["num_inference_steps"] and app.defaults.save_gpu_memory  # the page starts from the command line
    settings = {"num_inference_steps": 3.0, "guidance_scale": 2.5, "seed": 7, "save_gpu_memory": False,
                "reference_kps": "16,20,48,20,32,40"}  # as the widgets give them
    driven = app.request("face.png", "speech.wav", "their_talk.MOV", settings, "out.mp4")
    assert (driven.reference_video, driven.kps_path) == ("their_talk.MOV", None)
    assert (driven.num_inference_steps, driven.guidance_scale, driven.seed) == (3, 2.5, 7)
    assert driven.save_gpu_memory is False and driven.preset == "fast"  # the box turns off what the command line turned on
    assert driven.reference_kps == "16,20,48,20,32,40"
    assert app.request("face.png", "speech.wav", "kps.pth", {}, "out.mp4").kps_path == "kps.pth"
    with pytest.raises(InputError, match=r"--guidance_scale 99.0: must be between 0.0 and 30.0"):
        app.request("face.png", "speech.wav", None, {"guidance_scale": 99.0}, "out.mp4")  # a value the page cannot send
    with pytest.raises(PageError, match="upload a portrait first"):
        app.request(None, "speech.wav", None, {}, "out.mp4")
    assert app.generate("face.png", None, None, {}) == (None, "error: upload or record the speech first")


def test_without_gradio_the_script_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # what `import gradio` meets where it is not installed
    assert web_ui_script.main([]) == 2
    assert capsys.readouterr().err == "error: the web UI needs Gradio, which the CLI does not install: pip install -r requirements-ui.txt\n"


def test_a_flag_the_page_sets_is_refused_on_the_command_line(files, capsys):
    with pytest.raises(SystemExit) as exit_:
        web_ui_script.main(["--kps_path", str(files["kps"])])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(": error: --kps_path is given for each video in the page, not on the command line")


def test_a_taken_port_and_missing_weights_are_one_line_each(server, files, tmp_path):
    """The port is checked before any network loads; both exit with status 2 and no traceback."""
    url, _ = server
    port = url.rsplit(":", 1)[1].strip("/")
    both = {name: subprocess.Popen([sys.executable, str(ROOT / "scripts" / "web_ui.py"), *map(str, args)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            for name, args in (("taken", ["--port", port, *weight_flags(files["ckpts"])]),
                               ("missing", ["--port", free_port(), "--output_dir", tmp_path, *weight_flags(tmp_path / "none")]))}
    (_, taken), (_, missing) = both["taken"].communicate(timeout=300), both["missing"].communicate(timeout=300)
    assert both["taken"].returncode == 2 and taken.strip() == (
        f"error: cannot serve on 127.0.0.1:{port} (Address already in use); give another --port or --host")
    assert both["missing"].returncode == 2 and missing.strip().splitlines()[-1].startswith("error: missing model file")
    assert "Traceback" not in taken + missing

"""The typed request: inference.py's parser comes from it, values are typed and checked as a request is made, and
the resume fingerprint holds exactly the settings that change the video."""

import re
from dataclasses import FrozenInstanceError, fields

import pytest

import inference
from app.requests import PLACEHOLDERS, PRESETS, SETTING_RANGES, SETTINGS, GenerationRequest, InputError, parse_request
from pipelines.loading import ModelPaths


def test_the_parser_has_one_flag_per_field_with_the_fields_defaults():
    parser = inference.build_parser()
    destinations = {action.dest: action for action in parser._actions if action.dest != "help"}
    assert list(destinations) == [*SETTINGS, *(f.name for f in fields(ModelPaths))]  # in the request's order
    for name, f in SETTINGS.items():
        assert destinations[name].default == f.default, name
        assert destinations[name].required == f.metadata["required"], name
    assert parse_request(PLACEHOLDERS) == GenerationRequest(reference_image_path="portrait.png", audio_path="speech.wav", output_path="video.mp4")
    help_text = " ".join(parser.format_help().split())
    assert "--retarget_strategy RETARGET_STRATEGY" in help_text and "one of fix_face, no_retarget" in help_text
    assert "--guidance_interval START END" in help_text


def test_values_are_typed_and_checked_as_the_request_is_made():
    request = GenerationRequest(num_inference_steps=12.0, seed="7", guidance_interval=[0, 0.5], save_gpu_memory="yes")
    assert (request.num_inference_steps, request.seed, request.guidance_interval, request.save_gpu_memory) == (12, 7, (0.0, 0.5), True)
    for bad, message in ((dict(num_inference_steps=12.5), "--num_inference_steps 12.5: give an integer"),
                         (dict(save_gpu_memory="maybe"), "--save_gpu_memory 'maybe': give true or false"),
                         (dict(guidance_interval=[0.1]), "--guidance_interval [0.1]: give two numbers"),
                         (dict(image_width=520.0, image_height=100), "--image_height 100: must be a multiple of 8"),
                         (dict(device="tpu"), "--device 'tpu' is unknown; choose one of auto, cuda, mps, cpu"),
                         (dict(context_frames=4), "--context_overlap 4: must be at least 0 and smaller than --context_frames (4)")):
        with pytest.raises(InputError, match=re.escape(message)):
            GenerationRequest(**bad)
    with pytest.raises(FrozenInstanceError):
        request.seed = 1  # changed only through replace, which checks again
    with pytest.raises(InputError, match="--fps 0.0: must be between 1.0 and 120.0"):
        request.replace(fps=0)


def test_a_preset_fills_only_what_was_not_given_and_fills_again_when_it_changes():
    fast = GenerationRequest(preset="fast", num_inference_steps=3)
    assert fast.num_inference_steps == 3 and fast.scheduler == PRESETS["fast"]["scheduler"]
    published = fast.replace(preset="published")
    assert published.num_inference_steps == 3  # given: kept
    assert (published.scheduler, published.cache_interval) == (PRESETS["published"]["scheduler"], PRESETS["published"]["cache_interval"])
    assert GenerationRequest().replace(vae_path="elsewhere/").weights.vae_path == "elsewhere/"  # a weight by its flag name


def test_the_resume_fingerprint_holds_the_settings_that_change_the_video():
    request = GenerationRequest()
    left_out = set(SETTINGS) - set(request.video_settings())
    # Where the video is written, how it is filtered and marked on the way out, and which device and memory plan
    # compute it.
    assert left_out == {"output_path", "no_median_filter", "save_gpu_memory", "resume_interval", "device", "gpu_id", "decode_batch_frames",
                        "no_provenance", "c2pa_cert", "c2pa_key"}
    assert request.replace(device="cpu").video_settings() == request.video_settings()
    assert request.replace(seed=1).video_settings() != request.video_settings()


def test_each_limit_lives_in_its_field():
    assert SETTING_RANGES["context_frames"] == SETTINGS["context_frames"].metadata["range"]
    from motion.plan import MAX_HEAD_MOTION_STRENGTH
    from pipelines.pipeline_v_express import MAX_CONTEXT_FRAMES

    assert SETTING_RANGES["head_motion_strength"] == (0.0, MAX_HEAD_MOTION_STRENGTH)
    assert SETTING_RANGES["context_frames"] == (1, MAX_CONTEXT_FRAMES)


def test_a_generator_names_the_load_time_setting_a_request_changes():
    from app.generation import VideoGenerator

    generator = VideoGenerator(GenerationRequest(device="cpu"))  # nothing loads before a video is asked for
    with pytest.raises(InputError, match="^--vae_path differs from the value the networks were loaded with"):
        generator.generate(GenerationRequest(device="cpu").replace(vae_path="elsewhere/"))
    with pytest.raises(InputError, match="^--dtype differs"):
        generator.generate(GenerationRequest(device="cpu", dtype="bf16"))

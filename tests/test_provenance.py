"""Every video says it is AI-generated: IPTC's digital source type in its XMP, read back by exiftool, and a signed
C2PA manifest, read back and validated by c2pa's own reader; --no_provenance leaves both out, and the frames are the
same either way."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from helpers.cli import SIZE, inspect_mp4, make_inputs, make_model_ckpts, run_cli, weight_flags
from media.provenance import SOURCE_TYPE, local_credentials

EXIFTOOL = shutil.which("exiftool")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("provenance")
    inputs = make_inputs(folder)
    flags = ["--reference_image_path", inputs["image"], "--audio_path", inputs["audio"], "--kps_path", inputs["kps"],
             "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 1, *weight_flags(make_model_ckpts(folder / "ckpts"))]
    return dict(folder=folder, flags=flags)


def xmp(path) -> dict:
    if EXIFTOOL is None:
        pytest.skip("exiftool is missing: apt-get install -y libimage-exiftool-perl (.ci/run does)")
    return json.loads(subprocess.run([EXIFTOOL, "-j", "-XMP:all", str(path)], capture_output=True, text=True, check=True).stdout)[0]


def c2pa_manifest(path) -> tuple[dict, str]:
    import c2pa

    with c2pa.Reader(str(path)) as reader:
        store = json.loads(reader.json())
        return store["manifests"][store["active_manifest"]], reader.get_validation_state()


def test_marked_by_default_and_left_out_on_request_with_the_same_frames(setup):
    marked, plain = setup["folder"] / "marked.mp4", setup["folder"] / "plain.mp4"
    result = run_cli("inference.py", *setup["flags"], "--output_path", marked)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "provenance marks" in result.stdout  # its cost, in the summary's phases
    assert run_cli("inference.py", *setup["flags"], "--output_path", plain, "--no_provenance").returncode == 0

    tags = xmp(marked)
    assert tags["DigitalSourceType"] == SOURCE_TYPE == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert tags["CreatorTool"].startswith("V-Express") and "AI-generated" in tags["Description"]
    manifest, state = c2pa_manifest(marked)
    assert state == "Valid"  # signed, and the file is the one signed (its hash covers the XMP too)
    actions = next(a["data"]["actions"] for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
    assert actions[0]["action"] == "c2pa.created" and actions[0]["digitalSourceType"] == SOURCE_TYPE

    assert "DigitalSourceType" not in xmp(plain)
    assert np.array_equal(inspect_mp4(marked)["frames"], inspect_mp4(plain)["frames"])  # the marks leave the video as it is


def test_a_users_certificate_signs_and_bad_ones_are_one_line(setup, tmp_path):
    chain, key = local_credentials(tmp_path / "mine")  # a chain and key of the user's own, as PEM files
    output = setup["folder"] / "theirs.mp4"
    result = run_cli("inference.py", *setup["flags"], "--output_path", output, "--c2pa_cert", chain, "--c2pa_key", key)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest, state = c2pa_manifest(output)
    assert state == "Valid" and manifest["signature_info"]["issuer"] == "V-Express, this machine"

    other_chain, _ = local_credentials(tmp_path / "other")
    for extra, message in ((["--c2pa_cert", chain], "give --c2pa_cert and --c2pa_key together"),
                           (["--c2pa_cert", other_chain, "--c2pa_key", key], f"--c2pa_key {key} is not the key of the first certificate"),
                           (["--c2pa_cert", key, "--c2pa_key", key], f"--c2pa_cert {key}: not a readable PEM certificate chain")):
        refused = run_cli("inference.py", *setup["flags"], "--output_path", tmp_path / "never.mp4", *extra)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and message in refused.stderr, refused.stderr
        assert not (tmp_path / "never.mp4").exists()

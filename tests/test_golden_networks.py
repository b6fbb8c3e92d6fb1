"""Our networks, loaded strictly from the published file format, compute the published numbers."""

import pytest
import torch

from modules.checkpoints import load_audio_projection, load_denoising_unet, load_reference_net, load_v_kps_guider
from modules.reference_net import compute_reference_bank
from helpers.tiny import GOLDEN_ARCH, GOLDEN_CKPTS, GOLDEN_UNET_CONFIG, golden_case, rel_err

WEIGHTS = GOLDEN_CKPTS / "v-express"
TOLERANCE = 1e-4


def test_v_kps_guider():
    case = golden_case("guider")
    guider = load_v_kps_guider(WEIGHTS / "v_kps_guider.bin")
    with torch.no_grad():
        assert rel_err(guider(case["kps_images"]), case["output"]) < TOLERANCE


def test_audio_projection():
    case = golden_case("audio_projection")
    projection = load_audio_projection(WEIGHTS / "audio_projection.bin", config=GOLDEN_ARCH["audio_projection"])
    with torch.no_grad():
        assert rel_err(projection(case["input"]), case["output"]) < TOLERANCE


@pytest.fixture(scope="module")
def reference_net():
    return load_reference_net(GOLDEN_UNET_CONFIG, WEIGHTS / "reference_net.bin")


@pytest.fixture(scope="module")
def golden_bank():
    case = golden_case("reference_bank")
    return {key.removeprefix("bank."): value for key, value in case.items() if key.startswith("bank.")}


def test_reference_bank_and_output(reference_net, golden_bank):
    case = golden_case("reference_bank")
    with torch.no_grad():
        bank = compute_reference_bank(reference_net, case["reference_latent"])
        output = reference_net(case["reference_latent"], 0, encoder_hidden_states=case["encoder_hidden_states"]).sample
    assert sorted(bank) == sorted(golden_bank)
    for path, tensor in bank.items():
        assert tensor.shape == golden_bank[path].shape
        assert rel_err(tensor, golden_bank[path]) < TOLERANCE, path
    assert rel_err(output, case["reference_net_output"]) < TOLERANCE


@pytest.mark.parametrize("reference_weight, audio_weight", [(0.95, 3.0), (1.0, 1.0)])
def test_denoising_unet(golden_bank, reference_weight, audio_weight):
    case = golden_case("denoising_unet")
    unet = load_denoising_unet(
        GOLDEN_UNET_CONFIG, GOLDEN_ARCH["unet_additional_kwargs"], WEIGHTS / "denoising_unet.bin", WEIGHTS / "motion_module.bin"
    )
    expected = case[f"output_ref{reference_weight}_aud{audio_weight}"]
    with torch.no_grad():
        # As the published pipeline runs it: zero conditions in the unconditional half.
        guided_bank = {path: torch.cat([torch.zeros_like(b), b]) for path, b in golden_bank.items()}
        plain = unet(
            case["latents"], case["timestep"], case["audio_tokens"], case["kps_features"],
            unet.project_reference_bank(guided_bank), reference_weight, audio_weight,
        )
        # Our way: conditions for the conditional half only, the unconditional half by the bias shortcut.
        shortcut = unet(
            case["latents"], case["timestep"], case["audio_tokens"][6:], case["kps_features"][1:],
            unet.project_reference_bank(golden_bank), reference_weight, audio_weight, num_unconditional=1,
        )
    assert rel_err(plain, expected) < TOLERANCE
    assert rel_err(shortcut, expected) < TOLERANCE

"""Saving in the published layout and loading strictly; bad files are refused with a clear message."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from modules.checkpoints import (
    CheckpointError, add_reference_attention, load_audio_projection, load_denoising_unet, load_reference_net,
    load_v_kps_guider, motion_module_state_dict, read_state_dict, rename_legacy_audio_attention,
)
from helpers.tiny import MOTION_KWARGS, UNET_CONFIG, tiny_audio_projection, tiny_guider, tiny_reference_net, tiny_unet


def save_published_layout(folder):
    """The five .bin files as the published code writes them: plain torch.save'd state dicts."""
    unet = tiny_unet()
    state = unet.state_dict()
    torch.save({k: v for k, v in state.items() if "motion_modules" not in k}, folder / "denoising_unet.bin")
    torch.save({k: v for k, v in state.items() if "motion_modules" in k}, folder / "motion_module.bin")
    torch.save(tiny_reference_net().state_dict(), folder / "reference_net.bin")
    torch.save(tiny_guider().state_dict(), folder / "v_kps_guider.bin")
    torch.save(tiny_audio_projection().state_dict(), folder / "audio_projection.bin")
    return unet


def assert_same_weights(loaded, original):
    expected = original.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_round_trip_in_published_layout(tmp_path):
    unet = save_published_layout(tmp_path)
    loaded = load_denoising_unet(UNET_CONFIG, MOTION_KWARGS, tmp_path / "denoising_unet.bin", tmp_path / "motion_module.bin")
    assert_same_weights(loaded, unet)
    assert_same_weights(load_reference_net(UNET_CONFIG, tmp_path / "reference_net.bin"), tiny_reference_net())
    assert_same_weights(load_v_kps_guider(tmp_path / "v_kps_guider.bin"), tiny_guider())
    projection = load_audio_projection(tmp_path / "audio_projection.bin", config=dict(tiny_audio_projection().config))
    assert_same_weights(projection, tiny_audio_projection())
    assert not any(p.requires_grad for p in loaded.parameters())


def test_safetensors_and_half_precision_files_load(tmp_path):
    guider = tiny_guider()
    save_file({k: v.half() for k, v in guider.state_dict().items()}, tmp_path / "v_kps_guider.safetensors")
    loaded = load_v_kps_guider(tmp_path / "v_kps_guider.safetensors", dtype=torch.float32)
    assert loaded.conv_in.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.conv_in.weight, guider.conv_in.weight.half().float(), rtol=0, atol=0)


def test_denoising_unet_file_may_hold_the_motion_modules(tmp_path):
    unet = tiny_unet()
    torch.save(unet.state_dict(), tmp_path / "denoising_unet.bin")
    assert_same_weights(load_denoising_unet(UNET_CONFIG, MOTION_KWARGS, tmp_path / "denoising_unet.bin"), unet)


def test_without_motion_module_file_keys_are_missing(tmp_path):
    save_published_layout(tmp_path)
    with pytest.raises(CheckpointError, match=r"denoising_unet\.bin does not fit UNet3DConditionModel .* missing keys \(e\.g\. down_blocks\.0\.motion_modules"):
        load_denoising_unet(UNET_CONFIG, MOTION_KWARGS, tmp_path / "denoising_unet.bin")


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("conv_in.bias"), r"1 missing keys \(e\.g\. conv_in\.bias\)"),
    (lambda sd: sd.update(extra=torch.zeros(1)), r"1 unexpected keys \(e\.g\. extra\)"),
    (lambda sd: sd.update({"conv_out.bias": torch.zeros(7)}), r"1 tensors of the wrong shape \(e\.g\. conv_out\.bias \(7,\) \(expected \(16,\)\)\)"),
])
def test_mismatched_state_dict_is_refused(tmp_path, damage, message):
    state = tiny_guider().state_dict()
    damage(state)
    torch.save(state, tmp_path / "v_kps_guider.bin")
    with pytest.raises(CheckpointError, match=rf"v_kps_guider\.bin does not fit VKpsGuider .*{message}"):
        load_v_kps_guider(tmp_path / "v_kps_guider.bin", config=dict(tiny_guider().config))


def test_truncated_file_is_refused(tmp_path):
    torch.save(tiny_guider().state_dict(), tmp_path / "full.bin")
    data = (tmp_path / "full.bin").read_bytes()
    (tmp_path / "v_kps_guider.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"v_kps_guider\.bin: not a readable weight file \(it may be truncated or corrupt"):
        load_v_kps_guider(tmp_path / "v_kps_guider.bin")


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_payload_is_refused_without_running_it(tmp_path, capsys):
    torch.save({"conv_in.weight": torch.zeros(1), "payload": RunsCodeWhenUnpickled()}, tmp_path / "evil.bin")
    with open(tmp_path / "raw.bin", "wb") as f:
        pickle.dump({"payload": RunsCodeWhenUnpickled()}, f)
    for name in ("evil.bin", "raw.bin"):
        with pytest.raises(CheckpointError, match=rf"{name}: (refused to load|not a readable weight file)"):
            read_state_dict(tmp_path / name)
    assert "must never run" not in capsys.readouterr().out


def test_missing_file_names_the_download_command(tmp_path):
    with pytest.raises(CheckpointError, match=r"reference_net\.bin: weight file not found; download the weights with: python scripts/download_models\.py"):
        load_reference_net(UNET_CONFIG, tmp_path / "reference_net.bin")


def test_training_conversions():
    image_unet = {k: v for k, v in tiny_unet().state_dict().items() if ".attn1_5." not in k and ".norm1_5." not in k}
    converted = add_reference_attention(image_unet)
    assert converted.keys() == tiny_unet().state_dict().keys()
    path = "down_blocks.0.attentions.0.transformer_blocks.0"
    assert torch.equal(converted[f"{path}.attn1_5.to_q.weight"], image_unet[f"{path}.attn1.to_q.weight"])
    assert torch.equal(converted[f"{path}.norm1_5.bias"], image_unet[f"{path}.norm1.bias"])
    assert "down_blocks.0.resnets.0.norm1_5.weight" not in converted

    legacy = {f"{path}.attn2.processor.to_q_aud.weight": torch.ones(1), f"{path}.attn2.processor.to_out_aud.0.bias": torch.ones(2)}
    assert sorted(rename_legacy_audio_attention(legacy)) == [f"{path}.attn2.to_out.0.bias", f"{path}.attn2.to_q.weight"]

    animatediff = {"module.down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.ones(1), "conv_in.weight": torch.ones(1)}
    assert list(motion_module_state_dict(animatediff)) == ["down_blocks.0.motion_modules.0.temporal_transformer.norm.weight"]

"""Parity of `panns_cnn14` with upstream PANNs Cnn14 on seeded weights.

A fake official checkpoint (`{'model': state_dict, 'iteration': 0}`) is built
from the shared seeded tensors, with the fixed front-end tensors zeroed (our
encoder must build its own front end), loaded through `build_encoder`, and
compared with the outputs upstream computed from the same tensors."""
import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file

from common.encoders import build_encoder, check_encoder
from common.encoders.checkpoints import CheckpointError
from common.encoders.panns import CHECKPOINT_NAME


def _seeded_module(shared_dir):
    spec = importlib.util.spec_from_file_location("parity_seeded", shared_dir / "parity" / "seeded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_state_dict(shared_dir):
    manifest = json.loads((shared_dir / "parity" / "panns_cnn14_manifest.json").read_text())
    state = _seeded_module(shared_dir).seeded_state_dict(manifest["seeded"])
    for entry in manifest["computed"]:
        state[entry["key"]] = torch.zeros(entry["shape"])
    return state


@pytest.fixture(scope="module")
def reference(shared_dir):
    return load_file(str(shared_dir / "parity" / "panns_cnn14_reference.safetensors"))


@pytest.fixture(scope="module")
def pretrained(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    (root / "panns").mkdir()
    torch.save({"model": _fake_state_dict(shared_dir), "iteration": 0}, root / "panns" / CHECKPOINT_NAME)
    return root


@pytest.fixture(scope="module")
def encoder(pretrained):
    return build_encoder("panns_cnn14", pretrained_dir=pretrained)


def _assert_close(ours, ref, name):
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    err = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    print(f"{name}: max|ours-ref| = {err:.3g} (max|ref| = {scale:.3g})")
    assert err <= 1e-3 * scale, f"{name}: max error {err:.3g} > 1e-3 * {scale:.3g}"


def test_reference_keys(reference):
    assert sorted(reference) == ["clipwise_output", "embedding", "frontend_melW", "input_batch2",
                                 "input_single", "single_clipwise_output", "single_embedding"]


def test_mel_filterbank_matches_upstream(encoder, reference):
    _assert_close(encoder.cnn14.melW, reference["frontend_melW"], "melW")


@pytest.mark.parametrize("inputs,prefix", [("input_batch2", ""), ("input_single", "single_")])
def test_parity(encoder, reference, inputs, prefix):
    waveforms = reference[inputs]
    lengths = torch.full((waveforms.shape[0],), waveforms.shape[1])
    with torch.inference_mode():
        feats, mask = encoder(waveforms, lengths, ["embedding"])["embedding"]
        clipwise = encoder.tag(waveforms)
    assert feats.shape[1] == 1 and bool(mask.all())
    _assert_close(feats[:, 0], reference[prefix + "embedding"], prefix + "embedding")
    _assert_close(clipwise, reference[prefix + "clipwise_output"], prefix + "clipwise_output")


def test_contract_and_config(encoder, pretrained):
    check_encoder(encoder)
    config = encoder.config()
    assert config["checkpoint"] == CHECKPOINT_NAME
    assert config["checkpoint_bytes"] == (pretrained / "panns" / CHECKPOINT_NAME).stat().st_size


def test_missing_checkpoint_names_path_and_source(tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_encoder("panns_cnn14", pretrained_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "panns" / CHECKPOINT_NAME) in message
    assert "zenodo.org/record/3987831" in message


def test_misshaped_key_is_refused(shared_dir, tmp_path):
    state = _fake_state_dict(shared_dir)
    state["fc_audioset.weight"] = torch.zeros(10, 2048)  # a 10-class head
    path = tmp_path / "other.pth"
    torch.save({"model": state, "iteration": 0}, path)
    with pytest.raises(CheckpointError, match="fc_audioset.weight"):
        build_encoder("panns_cnn14", pretrained_dir=tmp_path, checkpoint=str(path))

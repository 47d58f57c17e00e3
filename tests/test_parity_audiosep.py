"""AudioSep ResUNet30 checkpoint parity against the upstream reference outputs
in ../shared/parity (see its README): a fake official checkpoint is built from
the seeded tensors, loaded through `build_encoder`, and every stored output is
compared with max |ours - ref| <= 1e-3 * max |ref|."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from common.encoders import build_encoder, check_encoder
from common.encoders.audiosep import CHECKPOINT_NAME, HF_CHECKPOINT_NAME
from common.encoders.checkpoints import CheckpointError

BLOCKS = [f"block{i}" for i in range(1, 7)]
TOLERANCE = 1e-3


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, f"{tuple(ours.shape)} != {tuple(ref.shape)}"
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def parity(shared_dir):
    folder = shared_dir / "parity"
    spec = importlib.util.spec_from_file_location("parity_seeded", folder / "seeded.py")
    seeded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeded)
    manifest = json.loads((folder / "audiosep_resunet30_manifest.json").read_text())
    from safetensors.torch import load_file
    reference = load_file(str(folder / "audiosep_resunet30_reference.safetensors"))
    return manifest, seeded.seeded_state_dict(manifest["seeded"]), reference


def official_state(manifest, seeded_state) -> dict[str, torch.Tensor]:
    """The official key layout: seeded weights, zero front-end kernels (a correct
    loader ignores them) and a few CLAP keys the loader must tolerate."""
    state = dict(seeded_state)
    state.update({e["key"]: torch.zeros(e["shape"]) for e in manifest["computed"]})
    state["query_encoder.model.logit_scale_a"] = torch.ones(())
    state["query_encoder.model.text_projection.0.weight"] = torch.randn(512, 768)
    return state


@pytest.fixture(scope="module")
def official_dir(parity, tmp_path_factory):
    manifest, seeded_state, _ = parity
    root = tmp_path_factory.mktemp("audiosep_official")
    (root / "AudioSep").mkdir()
    torch.save({"state_dict": official_state(manifest, seeded_state)}, root / "AudioSep" / CHECKPOINT_NAME)
    return root


@pytest.fixture(scope="module")
def encoder(official_dir):
    return build_encoder("audiosep", pretrained_dir=official_dir)


@pytest.mark.parametrize("case", ["batch2_cond", "batch2_zero", "single_zero"])
def test_block_means_match_reference(encoder, parity, case):
    _, _, ref = parity
    waveforms = ref["input_single" if case.startswith("single") else "input_batch2"]
    condition = ref["condition_batch2"] if case.endswith("cond") else None  # None: the default zero query
    lengths = torch.full((len(waveforms),), waveforms.shape[1])
    with torch.inference_mode():
        out = encoder(waveforms, lengths, BLOCKS, condition=condition)
    errors = {}
    for name in BLOCKS:
        feats, mask = out[name]
        # Upstream's block means average every pooled frame, including those of
        # the zero padding to a multiple of 32 STFT frames.
        errors[name] = relative_error(feats.mean(dim=1), ref[f"{case}_{name}_pool_mean"])
    # `pooled` (block 6) equals the mean over our valid frames for unpadded inputs.
    feats, mask = out["block6"]
    assert bool(mask.all())
    valid_mean = (feats * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    errors["pooled"] = relative_error(valid_mean, ref[f"{case}_pooled"])
    print(case, {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) <= TOLERANCE, errors


def test_separated_waveform_matches_reference(encoder, parity):
    _, _, ref = parity
    separated = encoder.separate(ref["input_batch2"], ref["condition_batch2"])
    error = relative_error(separated, ref["batch2_cond_separated_waveform"])
    print("separated_waveform", f"{error:.1e}")
    assert error <= TOLERANCE


def test_query_option_applies_one_embedding_to_every_item(official_dir, parity, tmp_path):
    _, _, ref = parity
    np.save(tmp_path / "query.npy", ref["condition_batch2"][0].numpy())
    encoder = build_encoder("audiosep", pretrained_dir=official_dir, query=str(tmp_path / "query.npy"))
    waveform = ref["input_batch2"][:1]
    with torch.inference_mode():
        feats, _ = encoder(waveform, torch.tensor([waveform.shape[1]]), ["block6"])["block6"]
    assert relative_error(feats.mean(dim=1), ref["batch2_cond_pooled"][:1]) <= TOLERANCE
    assert encoder.config()["query"].endswith("query.npy")


def test_hugging_face_checkpoint_loads(parity, encoder, tmp_path):
    manifest, seeded_state, _ = parity
    (tmp_path / "AudioSep").mkdir()
    torch.save(official_state(manifest, seeded_state), tmp_path / "AudioSep" / HF_CHECKPOINT_NAME)
    hf = build_encoder("audiosep", pretrained_dir=tmp_path)
    assert hf.config()["checkpoint"] == HF_CHECKPOINT_NAME
    ours, theirs = hf.state_dict(), encoder.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_missing_checkpoint_names_expected_path(tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_encoder("audiosep", pretrained_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "AudioSep" / CHECKPOINT_NAME) in message
    assert HF_CHECKPOINT_NAME in message and "Audio-AGI/AudioSep" in message


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_wrong_checkpoint_is_refused_naming_the_key(parity, tmp_path, damage):
    _, seeded_state, _ = parity
    key = "ss_model.base.encoder_block3.conv_block1.conv2.weight"
    state = dict(seeded_state)  # front-end kernels omitted: the loader ignores them anyway
    if damage == "missing":
        del state[key]
    else:
        state[key] = torch.zeros(128, 128, 5, 5)
    path = tmp_path / "broken.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        build_encoder("audiosep", pretrained_dir=tmp_path, checkpoint=str(path))


def test_encoder_contract(encoder):
    check_encoder(encoder)
    assert [layer.dim for layer in encoder.layers] == [32, 64, 128, 256, 384, 384]
    assert encoder.default_layer == "block6"
    config = encoder.config()
    assert config["checkpoint"] == CHECKPOINT_NAME and config["checkpoint_bytes"] > 0
    assert config["query"] == "zeros"
    json.dumps(config)

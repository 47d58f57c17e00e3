"""`resemblyzer`: Resemblyzer's GE2E speaker encoder (Wan et al. 2018), 16 kHz.

Optional extra: `pip install Resemblyzer` (or `pip install -e ".[extras]"`).
Only the weights file `pretrained.pt` that ships inside the package is used
(option `checkpoint=PATH` points elsewhere); the package itself is never
imported, because `import resemblyzer` imports `webrtcvad`, whose 2.0.10
release needs `pkg_resources`, gone from setuptools >= 81.

The network and its inference are Resemblyzer's `VoiceEncoder.embed_utterance`
rebuilt in torch on the encoder's device: 40-band mel power spectrogram
(librosa's `melspectrogram`: 25 ms Hann window, 10 ms hop, centred with zero
padding, Slaney mel filters, no log), cut into partial utterances of 160
frames (1.6 s) every 77 frames (rate 1.3 per second; the last one is kept when
it is at least 75% covered, the waveform zero-padded to its end), a 3-layer
LSTM(40 -> 256) whose last hidden state goes through Linear(256 -> 256) + ReLU
and L2 normalisation. The utterance embedding is the L2-normalised mean of the
partial embeddings.

Preprocessing (Resemblyzer's `preprocess_wav` on an in-memory waveform): the
volume is raised (never lowered) to -30 dBFS RMS. Its second step, trimming
silences longer than ~0.2 s with the WebRTC VAD, is not applied: it needs
webrtcvad and would break the time alignment of frame-level outputs.

Each item is computed on its own valid samples, so padding never matters.

Layers:
  partials   [B, N, 256]  L2-normalised embeddings of the 1.6 s partial
                          utterances, one per 0.77 s
  embedding  [B, 1, 256]  the utterance embedding, default
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import librosa
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import Encoder, Layer
from .checkpoints import CheckpointError, load_strict, read_state_dict

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
RATE = 1.3  # partial utterances per second
MIN_COVERAGE = 0.75
FRAME_STEP = int(round((SAMPLE_RATE / RATE) / HOP))  # 77
TARGET_DBFS = -30.0
INT16_MAX = 2 ** 15 - 1
EMBED_DIM = 256
TRAINING_ONLY_KEYS = ("similarity_weight", "similarity_bias")  # GE2E loss parameters


class MissingExtraError(UserError, ImportError):
    """An optional encoder whose package is not installed."""


def package_weights() -> Path:
    """`pretrained.pt` inside the installed Resemblyzer package, found without
    importing it."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError('The resemblyzer encoder needs the Resemblyzer package: '
                                'pip install Resemblyzer (or pip install -e ".[extras]").')
    return Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"


def partial_slices(n_samples: int) -> list[int]:
    """Start frames of the partial utterances of an item of `n_samples`
    (Resemblyzer's `compute_partial_slices` with rate 1.3, coverage 0.75)."""
    n_frames = int(math.ceil((n_samples + 1) / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + FRAME_STEP + 1)
    starts = list(range(0, steps, FRAME_STEP))
    last = starts[-1] * HOP
    coverage = (n_samples - last) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


class GE2E(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, EMBED_DIM, 3, batch_first=True)
        self.linear = nn.Linear(EMBED_DIM, EMBED_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """[n, 160, 40] mel frames -> [n, 256] L2-normalised embeddings."""
        _, (hidden, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1)


class ResemblyzerEncoder(Encoder):
    sample_rate = SAMPLE_RATE
    window_seconds = None  # partial utterances cover any length
    min_seconds = 0.0
    padding_invariant = True  # every item is cut to its own length first
    options = {"checkpoint": str}

    def __init__(self, checkpoint: Path):
        super().__init__()
        self.checkpoint = Path(checkpoint)
        self.ge2e = GE2E()
        state = read_state_dict(self.checkpoint, wrapper_keys=("model_state",))
        state = {k: v for k, v in state.items() if k not in TRAINING_ONLY_KEYS}
        load_strict(self.ge2e, state, self.checkpoint)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)  # [40, 201]
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.layers = [Layer("partials", EMBED_DIM), Layer("embedding", EMBED_DIM)]
        self.default_layer = "embedding"

    @classmethod
    def from_options(cls, pretrained_dir: Path, checkpoint: str | None = None,
                     **options) -> "ResemblyzerEncoder":
        path = Path(checkpoint) if checkpoint else package_weights()
        if not path.is_file():
            raise CheckpointError(f"Resemblyzer weights not found: expected {path}; reinstall the "
                                  "package (pip install --force-reinstall Resemblyzer) or pass checkpoint=PATH.")
        return cls(path)

    def config(self) -> dict:
        return {"checkpoint": self.checkpoint.name, "checkpoint_bytes": self.checkpoint.stat().st_size,
                "volume_dbfs": TARGET_DBFS, "vad_trim": False}

    def mel_frames(self, wav: torch.Tensor) -> torch.Tensor:
        """[T] -> [1 + T // 160, 40] mel power frames (librosa.feature.melspectrogram)."""
        spec = torch.stft(wav, N_FFT, hop_length=HOP, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # [201, frames]
        return (self.mel_basis @ power).T

    @staticmethod
    def normalize_volume(wav: torch.Tensor) -> torch.Tensor:
        """Raise the RMS to -30 dBFS, never lower it (Resemblyzer's increase_only)."""
        rms = torch.sqrt(torch.mean((wav * INT16_MAX) ** 2))
        if not rms > 0:
            return wav
        change = TARGET_DBFS - 20 * torch.log10(rms / INT16_MAX)
        return wav * 10 ** (change / 20) if change > 0 else wav

    def forward(self, waveforms, lengths, layers):
        unknown = set(layers) - {"partials", "embedding"}
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)} for resemblyzer; available: partials, embedding")
        batch = waveforms.shape[0]
        mels, counts = [], []
        for wav, length in zip(waveforms, lengths.tolist()):
            wav = self.normalize_volume(wav[: int(length)])
            starts = partial_slices(len(wav))
            end = (starts[-1] + PARTIAL_FRAMES) * HOP
            if end >= len(wav):
                wav = F.pad(wav, (0, end - len(wav)))
            frames = self.mel_frames(wav)
            mels.extend(frames[s:s + PARTIAL_FRAMES] for s in starts)
            counts.append(len(starts))
        partials = self.ge2e(torch.stack(mels)).split(counts)
        num = max(counts)
        device = waveforms.device
        out = {}
        if "partials" in layers:
            feats = torch.zeros(batch, num, EMBED_DIM, device=device)
            mask = torch.zeros(batch, num, dtype=torch.bool, device=device)
            for b, p in enumerate(partials):
                feats[b, : len(p)] = p
                mask[b, : len(p)] = True
            out["partials"] = (feats, mask)
        if "embedding" in layers:
            embedding = torch.stack([F.normalize(p.mean(dim=0), dim=0) for p in partials])
            out["embedding"] = (embedding[:, None], torch.ones(batch, 1, dtype=torch.bool, device=device))
        return out

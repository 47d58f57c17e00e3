"""`mfcc`: MFCC and log-mel frames (librosa), the baseline that needs no weights."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import librosa
import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from ..options import OptionError, positive_int
from .base import Encoder, Layer


@cache
def _blas() -> ThreadpoolController:
    """Found once: finding the BLAS libraries reads /proc/self/maps (~3 ms)."""
    return ThreadpoolController()


class MFCCEncoder(Encoder):
    sample_rate = 16000
    padding_invariant = True  # each item is computed on its own valid samples
    options = {"n_mfcc": positive_int, "n_mels": positive_int, "n_fft": positive_int, "hop_length": positive_int}

    def __init__(self, n_mfcc: int = 40, n_mels: int = 64, n_fft: int = 400, hop_length: int = 160):
        super().__init__()
        if n_mfcc > n_mels:  # the DCT of n_mels bands has n_mels coefficients
            raise OptionError(f"n_mfcc={n_mfcc} exceeds n_mels={n_mels}: take n_mfcc <= n_mels")
        if n_fft < 16 or hop_length > n_fft:
            raise OptionError(f"n_fft={n_fft}, hop_length={hop_length}: take n_fft >= 16 and hop_length <= n_fft")
        self.n_mfcc, self.n_mels, self.n_fft, self.hop_length = n_mfcc, n_mels, n_fft, hop_length
        self.layers = [Layer("logmel", n_mels), Layer("mfcc", n_mfcc)]
        # built once: librosa's melspectrogram would rebuild it for every clip
        self.mel_basis = librosa.filters.mel(sr=self.sample_rate, n_fft=n_fft, n_mels=n_mels)
        self.default_layer = "mfcc"

    @classmethod
    def from_options(cls, pretrained_dir: Path, **options) -> "MFCCEncoder":
        return cls(**options)

    def config(self) -> dict:
        return {"n_mfcc": self.n_mfcc, "n_mels": self.n_mels, "n_fft": self.n_fft,
                "hop_length": self.hop_length, "librosa": librosa.__version__}

    def _frames(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        if len(audio) < self.n_fft:
            audio = np.pad(audio, (0, self.n_fft - len(audio)))
        power = np.abs(librosa.stft(audio, n_fft=self.n_fft, hop_length=self.hop_length, pad_mode="constant")) ** 2
        mel = self.mel_basis @ power
        logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
        mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=self.n_mfcc)
        return {"logmel": logmel.T, "mfcc": mfcc.T}

    def forward(self, waveforms, lengths, layers):
        # per-clip matrices are tiny: BLAS threads would only contend with the
        # DataLoader workers decoding the next batch
        with _blas().limit(limits=1):
            items = [self._frames(w[: int(n)].detach().cpu().numpy()) for w, n in zip(waveforms, lengths)]
        num = max(len(item[layers[0]]) for item in items)
        out = {}
        for name in layers:
            dim = items[0][name].shape[1]
            feats = torch.zeros(len(items), num, dim)
            mask = torch.zeros(len(items), num, dtype=torch.bool)
            for b, item in enumerate(items):
                feats[b, : len(item[name])] = torch.from_numpy(item[name])
                mask[b, : len(item[name])] = True
            out[name] = (feats.to(waveforms.device), mask.to(waveforms.device))
        return out

"""Short-time Fourier transform and soft masks, shared by the mask-based
separators (NMF, the oracle ideal ratio mask) so that they differ only in
how the mask is estimated."""
from __future__ import annotations

import librosa
import numpy as np

N_FFT = 1024
HOP = 256


def stft(audio: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Complex spectrogram [F, frames] (Hann window, centred)."""
    return librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=n_fft, hop_length=hop)


def istft(spec: np.ndarray, length: int, hop: int = HOP) -> np.ndarray:
    return librosa.istft(spec, hop_length=hop, length=length).astype(np.float32)


def wiener_masks(estimates: list[np.ndarray], power: float = 2.0, eps: float = 1e-10) -> list[np.ndarray]:
    """Soft masks from non-negative magnitude estimates of each source:
    |S_k|^p / sum_j |S_j|^p (p=2: Wiener). They sum to one wherever any
    estimate is non-zero."""
    powered = [np.power(np.maximum(e, 0.0), power) for e in estimates]
    total = np.sum(powered, axis=0) + eps
    return [p / total for p in powered]


def apply_masks(mixture: np.ndarray, masks: list[np.ndarray], spec: np.ndarray | None = None,
                hop: int = HOP) -> list[np.ndarray]:
    """Each mask applied to the mixture's STFT, back to [T] waveforms."""
    spec = stft(mixture, hop=hop) if spec is None else spec
    return [istft(mask * spec, len(mixture), hop=hop) for mask in masks]

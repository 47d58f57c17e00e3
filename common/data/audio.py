"""Audio loading that every file of the six datasets survives.

Decoding is soundfile's (WAV of any integer/float depth incl. 8-bit unsigned
and 24-bit, FLAC); resampling is soxr's. Everything comes out as float32 mono
at the rate the encoder asks for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import UserError


class AudioReadError(UserError, RuntimeError):
    """A file that cannot be decoded; the message names the file and the cause."""


def audio_duration(path: str | Path) -> float:
    """Duration in seconds, read from the header only."""
    try:
        with sf.SoundFile(str(path)) as f:  # sf.info would also format a description: twice the time
            return f.frames / f.samplerate
    except Exception as err:  # soundfile raises several types
        raise AudioReadError(f"cannot read {path}: {err}") from err


def load_audio(path: str | Path, sample_rate: int, start: float = 0.0,
               end: float | None = None) -> np.ndarray:
    """Read `path` (optionally the segment [start, end) in seconds) as float32
    mono at `sample_rate`."""
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            first = max(0, int(round(start * sr)))
            last = f.frames if end is None else min(f.frames, int(round(end * sr)))
            f.seek(first)
            frames = max(0, last - first)
            if f.subtype == "PCM_16":  # as libsndfile scales it, at twice its speed
                audio = f.read(frames, dtype="int16", always_2d=True).astype(np.float32) * np.float32(1 / 32768)
            else:
                audio = f.read(frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioReadError(f"cannot read {path}: {err}") from err
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if sr != sample_rate and len(audio):
        audio = soxr.resample(audio, sr, sample_rate, quality="HQ").astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise AudioReadError(f"{path} holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)

"""Small synthetic datasets in the official layouts of the six tasks.

    python -m common.data.demo --out DIR [--tasks esc50 nsynth ...] [--seed 0]

or from Python::

    from common.data.demo import make_demo_datasets
    roots = make_demo_datasets("demo", tasks=None, seed=0)
    roots["esc50"]          # Path("demo/ESC-50-master")
    roots.awkward["urbansound8k"]   # the deliberately awkward files
    roots.counts["esc50"]   # number of audio files written

Roots (what each task's `--data-root` should point at):

    esc50            DIR/ESC-50-master          audio/*.wav, meta/esc50.csv
    urbansound8k     DIR/UrbanSound8K           audio/fold1..10/*.wav, metadata/UrbanSound8K.csv
    nsynth           DIR                        nsynth-{train,valid,test}/examples.json + audio/
    librispeech      DIR/LibriSpeech            train-clean-100/, test-clean/ (FLAC)
    speech_commands  DIR/speech_commands_v0.02  35 word folders, lists, _background_noise_/;
                     beside it DIR/speech_commands_test_set_v0.01/ and _v0.02/ (12 class folders)
    icbhi            DIR/ICBHI_final_database   *.wav + *.txt, split and diagnosis files

The audio is synthetic, never real recordings: each class is a fixed recipe
(fundamental, harmonic tilt, formants, noise band, amplitude modulation or
bursts) rendered with per-clip jitter (pitch, levels, onset, duration, added
noise), so that an MFCC probe learns the classes well above chance without
being perfect. Speakers (LibriSpeech, Speech Commands) are formant-like
spectral envelopes plus F0; ICBHI crackles are short clicks and wheezes
sustained tones over breathing noise, inside the annotated cycles.

Sizes (seed 0; about 5 s on 2 idle cores with workers=2, ~190 MB):
    esc50            10 classes (6 ESC-10) x 10 clips (5 folds x takes A/B of one source)
    urbansound8k     10 classes x 10 folds x 2-3 clips = 233
    nsynth           train 11 families x 4 instruments x 5 notes = 220; valid, test 10 x 5 = 50 each
    librispeech      train-clean-100: 8 speakers x 3 chapters x 4 utterances (2-5 s);
                     test-clean: 2 other speakers x 4
    speech_commands  35 words x 14 speakers (10 train, 2 valid, 2 test by the official hash;
                     the 10 core words twice) = 630, plus 4 background noises; two 12-class
                     test archives of 12 x 5 clips by 5 other speakers
    icbhi            20 patients (10 with abnormal cycles) x 2 recordings, ~190 cycles; split 12/8 patients

Deliberately awkward files, as real downloads have them (listed per run in
`roots.awkward`, printed by the CLI):
- UrbanSound8K: 24-bit PCM, 32-bit float, 8-bit unsigned PCM, stereo, 8 kHz,
  22.05 kHz, 48 kHz, 96 kHz, stereo 24-bit 48 kHz, and a 0.3 s clip.
- ESC-50: one stereo and one 24-bit file (the real set is uniform).
- Speech Commands: clips shorter than 1 s.
- LibriSpeech: one long (~25 s) utterance.
- ICBHI: sample rates 4 kHz and 10 kHz beside 44.1 kHz (by device).
- NSynth: like the real valid and test splits, nsynth-valid and nsynth-test
  have no synth_lead notes (family 9); train has all 11 families.

Output is byte-identical for a given seed (every task draws from its own
generator, so generating a subset of tasks gives the same files). A root that
already exists is replaced only if an earlier run of this module wrote it
(marker file `.demo_generated`); anything else is refused, never deleted.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..entry import add_debug_option, entry_point
from ..options import non_negative_int, positive_int
from .speech_commands import V2_ONLY_WORDS

TASKS = ("esc50", "urbansound8k", "nsynth", "librispeech", "speech_commands", "icbhi")
ROOT_NAMES = {
    "esc50": "ESC-50-master",
    "urbansound8k": "UrbanSound8K",
    "nsynth": "",
    "librispeech": "LibriSpeech",
    "speech_commands": "speech_commands_v0.02",
    "icbhi": "ICBHI_final_database",
}
_TASK_CODE = {name: i + 1 for i, name in enumerate(TASKS)}
MARKER = ".demo_generated"
_VERSION = 1


@dataclass(frozen=True)
class AwkwardFile:
    """A file with an unusual property; `expect` holds `soundfile.info`
    attributes it must show (`duration_max`: longest duration in seconds,
    `duration_min`: shortest)."""
    path: Path
    why: str
    expect: dict = field(default_factory=dict)


class DemoRoots(dict):
    """dict task -> root Path, plus `.awkward` (task -> list[AwkwardFile])
    and `.counts` (task -> number of audio files)."""

    def __init__(self):
        super().__init__()
        self.awkward: dict[str, list[AwkwardFile]] = {}
        self.counts: dict[str, int] = {}


# --------------------------------------------------------------------------
# synthesis primitives (vectorised numpy, float32 output)

_TABLE = 2048  # wavetable length (power of two)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT size)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _band_noise(n: int, sr: int, lo: float, hi: float, rng: np.random.Generator,
                slope: float = 0.0) -> np.ndarray:
    """Unit-RMS noise with energy between lo and hi Hz (spectral amplitude
    ~ f^-slope inside the band)."""
    if n <= 0:
        return np.zeros(0, np.float32)
    size = _fast_len(n)
    bins = size // 2 + 1
    a = max(1, int(lo * size / sr))
    b = min(bins, max(a + 1, int(hi * size / sr)))
    spec = np.zeros(bins, np.complex64)
    k = b - a
    spec[a:b] = rng.standard_normal(k, dtype=np.float32) + 1j * rng.standard_normal(k, dtype=np.float32)
    if slope:
        spec[a:b] *= (np.arange(a, b, dtype=np.float32) / a) ** (-slope)
    x = np.fft.irfft(spec, size)[:n].astype(np.float32)
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    return x / rms


def _table(amps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One period of sum_k amps[k-1] * cos(2 pi k x + random phase), unit RMS."""
    spec = np.zeros(_TABLE // 2 + 1, np.complex128)
    k = len(amps)
    spec[1:k + 1] = amps * np.exp(1j * rng.uniform(0, 2 * np.pi, k))
    tab = np.fft.irfft(spec, _TABLE)
    rms = float(np.sqrt(np.mean(tab * tab))) or 1.0
    return (tab / rms).astype(np.float32)


def _osc(n: int, sr: int, f0, amps: np.ndarray, rng: np.random.Generator,
         vib: tuple[float, float] | None = None, glide: float = 0.0) -> np.ndarray:
    """Harmonic oscillator: wavetable read by a phase accumulator. `f0` is a
    scalar; `vib` = (rate Hz, depth as a fraction of f0); `glide` = total
    pitch change over the segment in octaves. Harmonics above 0.45 sr are
    dropped (no aliasing)."""
    depth = vib[1] if vib else 0.0
    fmax = f0 * (1 + depth) * 2 ** max(glide, 0.0)
    kmax = min(len(amps), int(0.45 * sr / fmax))
    if kmax < 1 or n <= 0:
        return np.zeros(max(n, 0), np.float32)
    tab = _table(np.asarray(amps[:kmax], np.float64), rng)
    t = np.arange(n, dtype=np.float64) / sr
    if vib or glide:
        inst = np.full(n, f0, np.float64)
        if glide:
            inst *= 2.0 ** (glide * t / max(t[-1], 1e-9))
        if vib:
            inst *= 1 + depth * np.sin(2 * np.pi * vib[0] * t + rng.uniform(0, 2 * np.pi))
        phase = np.cumsum(inst) / sr
    else:
        phase = f0 * t
    idx = ((phase + rng.uniform()) * _TABLE).astype(np.int64) & (_TABLE - 1)
    return tab[idx]


def _peaks(freqs: np.ndarray, formants, bw_scale: float = 1.0) -> np.ndarray:
    """Resonance gain at `freqs` for formants [(F, gain), ...]."""
    g = np.full(len(freqs), 0.02)
    for f, gain in formants:
        bw = (50 + 0.08 * f) * bw_scale
        g += gain / (1 + ((freqs - f) / bw) ** 2)
    return g


def _harm_amps(k: int, tilt: float, odd: bool = False) -> np.ndarray:
    h = np.arange(1, k + 1, dtype=np.float64)
    a = h ** -tilt
    if odd:
        a[1::2] *= 0.05
    return a


def _bursts(n: int, sr: int, rate: float, length: float, rng: np.random.Generator,
            shape: str = "decay", first: float | None = None) -> np.ndarray:
    """Envelope of repeated events: about `rate` per second, each `length` s."""
    env = np.zeros(n, np.float32)
    L = max(8, int(length * sr))
    if shape == "hann":
        ev = np.sqrt(np.abs(np.hanning(L))).astype(np.float32)
    else:
        att = max(2, int(0.003 * sr))
        ev = np.exp(-np.arange(L, dtype=np.float32) / (0.3 * L))
        ev[:att] *= np.linspace(0, 1, att, dtype=np.float32)
    pos = first if first is not None else rng.uniform(0, 0.5 / rate)
    while True:
        s = int(pos * sr)
        if s >= n:
            break
        seg = min(L, n - s)
        env[s:s + seg] = np.maximum(env[s:s + seg], ev[:seg] * rng.uniform(0.6, 1.0))
        pos += rng.uniform(0.7, 1.3) / rate
    return env


def _fade(x: np.ndarray, sr: int, ms: float = 10.0) -> np.ndarray:
    L = min(len(x) // 2, int(sr * ms / 1000))
    if L > 1:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, L))).astype(np.float32)
        x[:L] *= ramp
        x[-L:] *= ramp[::-1]
    return x


def _peak_norm(x: np.ndarray, peak: float) -> np.ndarray:
    m = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x * (peak / m)).astype(np.float32) if m > 0 else x.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def _render(rc: dict, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Render one clip of class recipe `rc` (n samples, no background noise).

    Recipe keys (all optional): f0, harm, tilt, odd, formants [(F, gain)],
    chord (semitone offsets), vib (rate, depth), glide (octaves), partials
    [(ratio, amp)], noise (lo, hi, level), am (rate, depth), bursts (rate,
    length s, shape), decay (s), jitter (semitones)."""
    y = np.zeros(n, np.float32)
    if rc.get("f0"):
        f0 = rc["f0"] * 2 ** (rng.uniform(-1, 1) * rc.get("jitter", 1.5) / 12)
        tilt = rc.get("tilt", 1.0) + rng.uniform(-0.15, 0.15)
        k = rc.get("harm", 10)
        amps = _harm_amps(k, tilt, rc.get("odd", False)) * rng.uniform(0.8, 1.2, k)
        if rc.get("formants"):
            amps *= _peaks(f0 * np.arange(1, k + 1), rc["formants"])
        vib = rc.get("vib")
        if vib:
            vib = (vib[0] * rng.uniform(0.85, 1.15), vib[1] * rng.uniform(0.8, 1.2))
        for semis in rc.get("chord", (0,)):
            y += _osc(n, sr, f0 * 2 ** (semis / 12), amps, rng, vib, rc.get("glide", 0.0))
        t = np.arange(n, dtype=np.float64) / sr
        for ratio, amp in rc.get("partials", ()):
            if f0 * ratio < 0.45 * sr:
                y += (amp * np.sqrt(2) * np.sin(2 * np.pi * f0 * ratio * t + rng.uniform(0, 6.3))).astype(np.float32)
    if rc.get("noise"):
        lo, hi, level = rc["noise"]
        s = rng.uniform(0.9, 1.1)
        y += level * rng.uniform(0.7, 1.3) * _band_noise(n, sr, lo * s, min(hi * s, 0.48 * sr), rng,
                                                         rc.get("slope", 0.0))
    t = np.arange(n, dtype=np.float32) / sr
    if rc.get("am"):
        rate, depth = rc["am"]
        rate *= rng.uniform(0.85, 1.15)
        y *= 1 - depth * 0.5 * (1 - np.cos(2 * np.pi * rate * t + rng.uniform(0, 6.3)))
    if rc.get("bursts"):
        rate, length, shape = rc["bursts"]
        y *= _bursts(n, sr, rate * rng.uniform(0.8, 1.2), length * rng.uniform(0.8, 1.2), rng, shape)
    if rc.get("decay"):
        y *= np.exp(-t / (rc["decay"] * rng.uniform(0.7, 1.3)))
    return _fade(y, sr)


def _add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, ref: float | None = None) -> np.ndarray:
    ref = _rms(x) if ref is None else ref
    return x + (ref / 10 ** (snr_db / 20)) * rng.standard_normal(len(x), dtype=np.float32)


def _distract(x: np.ndarray, sr: int, recipes: list[dict], exclude: int, db: tuple[float, float],
              rng: np.random.Generator) -> np.ndarray:
    """Mix in a clip of another class, `db` (range) below x in RMS."""
    j = int(rng.integers(0, len(recipes) - 1))
    j += j >= exclude
    other = _render(recipes[j], len(x), sr, rng)
    gain = _rms(x) / max(_rms(other), 1e-9) / 10 ** (rng.uniform(*db) / 20)
    return x + gain * other


def _write(path: Path, x: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"non-finite samples synthesised for {path}")
    sf.write(str(path), np.clip(x, -1.0, 0.999), sr, subtype=subtype, format=fmt)


def _prepare_root(root: Path) -> None:
    """Create `root`, replacing an earlier demo; refuse anything else."""
    if root.exists():
        if (root / MARKER).is_file():
            shutil.rmtree(root)
        elif root.is_dir() and not any(root.iterdir()):
            pass
        else:
            raise FileExistsError(f"{root} exists and was not written by common.data.demo; "
                                  "choose another --out (nothing was deleted)")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(f"synthetic demo data, common.data.demo v{_VERSION}\n")


# --------------------------------------------------------------------------
# ESC-50

# (target, category, esc10, recipe)
ESC_CLASSES = [
    (0, "dog", True, dict(f0=550, harm=12, tilt=1.0, formants=[(1200, 1.0), (2600, 0.5)],
                          noise=(500, 3000, 0.3), bursts=(2.0, 0.18, "decay"))),
    (1, "rooster", True, dict(f0=700, harm=10, tilt=0.8, vib=(0.8, 0.2), noise=(1000, 4000, 0.1),
                              bursts=(0.5, 1.6, "hann"))),
    (3, "cow", False, dict(f0=140, harm=30, tilt=1.0, formants=[(600, 1.0), (1000, 0.6)],
                           vib=(3.0, 0.02), bursts=(0.45, 1.8, "hann"))),
    (10, "rain", True, dict(noise=(2000, 16000, 1.0), am=(7.0, 0.3))),
    (11, "sea_waves", True, dict(noise=(80, 1500, 1.0), slope=0.5, am=(0.18, 0.9))),
    (13, "crickets", False, dict(f0=4500, harm=2, tilt=2.0, jitter=1.0, noise=(200, 2000, 0.05),
                                 bursts=(12.0, 0.04, "hann"))),
    (20, "crying_baby", True, dict(f0=420, harm=15, tilt=0.7, vib=(6.0, 0.03),
                                   formants=[(1000, 1.0), (3000, 0.6)], am=(1.1, 0.9))),
    (21, "sneezing", True, dict(f0=300, harm=8, tilt=1.5, noise=(1500, 9000, 1.5),
                                bursts=(0.3, 0.5, "decay"))),
    (37, "clock_alarm", False, dict(f0=2000, harm=3, tilt=1.5, jitter=0.7, bursts=(4.0, 0.12, "hann"))),
    (42, "siren", False, dict(f0=900, harm=6, tilt=1.2, vib=(0.4, 0.3), jitter=1.0)),
]
_ESC_CONTINUOUS = {"rain", "sea_waves", "crickets", "siren"}


def _make_esc50(out: Path, rng: np.random.Generator) -> tuple[Path, list[AwkwardFile], int]:
    root = out / ROOT_NAMES["esc50"]
    _prepare_root(root)
    sr, n = 44100, 5 * 44100
    src_ids = rng.choice(np.arange(1000, 260000), size=len(ESC_CLASSES) * 5, replace=False)
    stereo_at, pcm24_at = (2, 3, "B"), (6, 4, "A")  # (class index, fold, take)
    rows, awkward = [], []
    for ci, (target, category, esc10, rc) in enumerate(ESC_CLASSES):
        for fold in range(1, 6):
            src = int(src_ids[ci * 5 + fold - 1])
            for take in "AB":
                if category in _ESC_CONTINUOUS:
                    start, stop = 0, n
                else:  # event shorter than 5 s, padded with digital silence as in ESC-50
                    m = int(rng.uniform(1.5, 5.0) * sr)
                    start = int(rng.uniform(0, n - m))
                    stop = start + m
                x = np.zeros(n, np.float32)
                seg = _render(rc, stop - start, sr, rng)
                if rng.uniform() < 0.5:  # another source in the background
                    seg = _distract(seg, sr, [c[3] for c in ESC_CLASSES], ci, (4, 14), rng)
                x[start:stop] = _add_noise(seg, rng.uniform(15, 35), rng)
                x = _peak_norm(x, rng.uniform(0.2, 0.9))
                name = f"{fold}-{src}-{take}-{target}.wav"
                path = root / "audio" / name
                if (ci, fold, take) == stereo_at:
                    right = 0.8 * x + 0.01 * rng.standard_normal(n, dtype=np.float32)
                    _write(path, np.stack([x, right], axis=1), sr)
                    awkward.append(AwkwardFile(path, "stereo (2 channels)", {"channels": 2}))
                elif (ci, fold, take) == pcm24_at:
                    _write(path, x, sr, "PCM_24")
                    awkward.append(AwkwardFile(path, "24-bit PCM", {"subtype": "PCM_24"}))
                else:
                    _write(path, x, sr)
                rows.append((name, fold, target, category, esc10, src, take))
    rows.sort()
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    lines += [f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]}" for r in rows]
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    (root / "meta" / SEPARATION_LIST).write_text(_esc50_mixture_list(rows))
    (root / "README.md").write_text(
        "# ESC-50 (synthetic demo)\n\nSynthetic clips in the layout of ESC-50 (audio/, meta/esc50.csv),\n"
        f"{len(ESC_CLASSES)} of the 50 classes x 10 clips, 5 folds; written by common.data.demo.\n")
    return root, awkward, len(rows)


SEPARATION_LIST = "separation_mixtures.csv"


def _esc50_mixture_list(rows) -> str:
    """Separation mixtures of the demo clips in AudioSep's esc50_eval.csv
    format: every take-A clip of folds 4 and 5 as the target, the take-B clip
    of the next class in the other fold as the interference (folds 1-3 are
    left for training the NMF bases)."""
    by_key = {(r[2], r[1], r[6]): r[0] for r in rows}   # (class id, fold, take) -> file name
    ids = [c[0] for c in ESC_CLASSES]
    lines = ["idx,caption,src_wav,noise_wav"]
    for fold in (4, 5):
        for i, (target, category, _, _) in enumerate(ESC_CLASSES):
            other = by_key[(ids[(i + 1) % len(ids)], 9 - fold, "B")]
            lines.append(f"{len(lines) - 1},{category.replace('_', ' ')},{by_key[(target, fold, 'A')]},{other}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# UrbanSound8K

US8K_CLASSES = [
    (0, "air_conditioner", dict(f0=120, harm=6, tilt=1.0, jitter=0.5, noise=(100, 4000, 1.5), slope=0.8)),
    (1, "car_horn", dict(f0=420, harm=20, tilt=0.6, chord=(0, 3), bursts=(0.7, 0.8, "hann"),
                         noise=(300, 3000, 0.05))),
    (2, "children_playing", dict(f0=320, harm=10, tilt=1.0, vib=(4.0, 0.15), formants=[(900, 1.0), (2500, 0.6)],
                                 noise=(200, 5000, 0.5), am=(3.0, 0.6))),
    (3, "dog_bark", dict(f0=600, harm=10, tilt=0.9, formants=[(1100, 1.0), (2400, 0.5)],
                         noise=(400, 3500, 0.3), bursts=(1.5, 0.2, "decay"))),
    (4, "drilling", dict(f0=1500, harm=6, tilt=0.8, jitter=2.0, noise=(2000, 10000, 0.6), am=(25.0, 0.5))),
    (5, "engine_idling", dict(f0=45, harm=40, tilt=0.9, jitter=2.0, am=(12.0, 0.4), noise=(50, 1000, 0.4))),
    (6, "gun_shot", dict(noise=(100, 12000, 1.0), slope=0.3, bursts=(0.8, 0.35, "decay"))),
    (7, "jackhammer", dict(f0=220, harm=5, tilt=1.0, noise=(300, 6000, 1.0), bursts=(14.0, 0.04, "decay"))),
    (8, "siren", dict(f0=800, harm=8, tilt=1.0, vib=(0.3, 0.3), jitter=1.0)),
    (9, "street_music", dict(f0=262, harm=8, tilt=1.1, chord=(0, 4, 7), am=(2.0, 0.5),
                             noise=(100, 3000, 0.1))),
]
_US8K_SHORT = {"car_horn": (1.0, 4.0), "dog_bark": (0.8, 4.0), "gun_shot": (0.5, 2.5)}
# (kind, samplerate, subtype, channels, duration or None, expected soundfile.info)
_US8K_AWKWARD = [
    ("24-bit PCM", 44100, "PCM_24", 1, None, {"subtype": "PCM_24"}),
    ("32-bit float", 44100, "FLOAT", 1, None, {"subtype": "FLOAT"}),
    ("8-bit unsigned PCM", 44100, "PCM_U8", 1, None, {"subtype": "PCM_U8"}),
    ("stereo 16-bit", 44100, "PCM_16", 2, None, {"channels": 2}),
    ("8 kHz", 8000, "PCM_16", 1, None, {"samplerate": 8000}),
    ("22.05 kHz", 22050, "PCM_16", 1, None, {"samplerate": 22050}),
    ("48 kHz", 48000, "PCM_16", 1, None, {"samplerate": 48000}),
    ("96 kHz", 96000, "PCM_16", 1, None, {"samplerate": 96000}),
    ("stereo 24-bit 48 kHz", 48000, "PCM_24", 2, None, {"channels": 2, "subtype": "PCM_24", "samplerate": 48000}),
    ("very short (0.3 s)", 44100, "PCM_16", 1, 0.3, {"duration_max": 0.301}),
]


def _make_us8k(out: Path, rng: np.random.Generator) -> tuple[Path, list[AwkwardFile], int]:
    root = out / ROOT_NAMES["urbansound8k"]
    _prepare_root(root)
    fs_ids = iter(rng.choice(np.arange(1000, 200000), size=400, replace=False))
    # awkward kind i goes to class i, fold (3i mod 10)+1, first clip
    awk_at = {(i, (3 * i) % 10 + 1): spec for i, spec in enumerate(_US8K_AWKWARD)}
    rows, awkward = [], []
    for cid, cname, rc in US8K_CLASSES:
        for fold in range(1, 11):
            fs = int(next(fs_ids))
            clips = [(fs, 0, 0), (fs, 0, 1)]  # two consecutive slices of one occurrence
            if (cid + fold) % 3 == 0:
                clips.append((int(next(fs_ids)), 0, 0))
            slice_start = {}
            for ci, (fsid, occ, sl) in enumerate(clips):
                spec = awk_at.get((cid, fold)) if ci == 0 else None
                sr = spec[1] if spec else 44100
                lo, hi = _US8K_SHORT.get(cname, (4.0, 4.0))
                if cname in _US8K_SHORT:
                    dur = rng.uniform(lo, hi)
                else:
                    dur = 4.0 if rng.uniform() < 0.85 else rng.uniform(2.0, 4.0)
                if spec and spec[4]:
                    dur = spec[4]
                n = int(round(dur * sr))
                dur = n / sr
                salience = 1 if rng.uniform() < 0.65 else 2
                x = _render(rc, n, sr, rng)
                if rng.uniform() < 0.6:  # street background: another class, quieter
                    x = _distract(x, sr, [c[2] for c in US8K_CLASSES], cid,
                                  (6, 18) if salience == 1 else (0, 8), rng)
                snr = rng.uniform(12, 30) if salience == 1 else rng.uniform(3, 12)
                x = _peak_norm(_add_noise(x, snr, rng), rng.uniform(0.1, 0.9))
                start = slice_start.get((fsid, occ), round(float(rng.uniform(0, 60)), 6))
                slice_start[(fsid, occ)] = start + dur
                name = f"{fsid}-{cid}-{occ}-{sl}.wav"
                path = root / "audio" / f"fold{fold}" / name
                if spec:
                    kind, _, subtype, channels, _, expect = spec
                    if channels == 2:
                        x = np.stack([x, 0.7 * x + 0.02 * rng.standard_normal(n, dtype=np.float32)], axis=1)
                    _write(path, x, sr, subtype)
                    awkward.append(AwkwardFile(path, kind, expect))
                else:
                    _write(path, x, sr)
                rows.append((name, fsid, start, start + dur, salience, fold, cid, cname))
    rows.sort()
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    lines += [f"{r[0]},{r[1]},{r[2]:.6f},{r[3]:.6f},{r[4]},{r[5]},{r[6]},{r[7]}" for r in rows]
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(lines) + "\n")
    (root / "UrbanSound8K_README.txt").write_text(
        "UrbanSound8K (synthetic demo)\n\nSynthetic clips in the layout of UrbanSound8K, 10 classes, 10 folds;\n"
        "sample rates, bit depths and channel counts vary on purpose. Written by common.data.demo.\n")
    return root, awkward, len(rows)


# --------------------------------------------------------------------------
# NSynth

NSYNTH_FAMILIES = ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                   "string", "synth_lead", "vocal"]
NSYNTH_SOURCES = ["acoustic", "electronic", "synthetic"]
NSYNTH_QUALITIES = ["bright", "dark", "distortion", "fast_decay", "long_release", "multiphonic",
                    "nonlinear_env", "percussive", "reverb", "tempo-synced"]
# family -> pitch range, sources, recipe (attack s, decay s or None = sustained, ...)
_NSYNTH_RECIPES = {
    "bass": dict(pitch=(28, 52), src=(1, 2), harm=24, tilt=1.6, attack=0.01, decay=1.2),
    "brass": dict(pitch=(50, 74), src=(0, 1), harm=30, tilt=0.5, attack=0.08, vib=(5.0, 0.004),
                  formants=[(1200, 1.0), (2500, 0.6)]),
    "flute": dict(pitch=(62, 86), src=(0, 2), harm=4, tilt=2.2, attack=0.1, vib=(5.0, 0.01),
                  noise=(2000, 7000, 0.2)),
    "guitar": dict(pitch=(40, 76), src=(0, 1), harm=20, tilt=1.0, attack=0.003, decay=0.6),
    "keyboard": dict(pitch=(36, 84), src=(0, 1, 2), harm=12, tilt=1.3, attack=0.005, decay=1.6),
    "mallet": dict(pitch=(62, 96), src=(0, 1), harm=2, tilt=2.0, attack=0.002, decay=0.25,
                   partials=[(3.93, 0.5), (9.2, 0.2)], noise=(2000, 7000, 0.1)),
    "organ": dict(pitch=(36, 84), src=(1,), harm=8, tilt=0.3, attack=0.02),
    "reed": dict(pitch=(50, 80), src=(0, 2), harm=20, tilt=0.8, odd=True, attack=0.04, vib=(4.5, 0.004)),
    "string": dict(pitch=(40, 84), src=(0, 1), harm=25, tilt=1.0, attack=0.25, vib=(6.0, 0.008),
                   noise=(1000, 6000, 0.05)),
    "synth_lead": dict(pitch=(48, 84), src=(2,), harm=40, tilt=1.0, attack=0.01, detune=0.12,
                       am=(6.0, 0.5)),
    "vocal": dict(pitch=(48, 76), src=(0, 2), harm=30, tilt=0.9, attack=0.12, vib=(5.0, 0.02),
                  formants=[(730, 1.0), (1090, 0.7), (2440, 0.4)]),
}
_NSYNTH_QUAL_P = {"bright": ("brass", "synth_lead", "reed"), "dark": ("bass", "organ", "flute"),
                  "fast_decay": ("mallet", "guitar"), "percussive": ("mallet", "keyboard", "guitar"),
                  "long_release": ("string", "organ")}


def _nsynth_note(fam: str, inst: dict, pitch: int, velocity: int, rng: np.random.Generator) -> np.ndarray:
    sr, n = 16000, 64000
    r = _NSYNTH_RECIPES[fam]
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    k = r["harm"]
    tilt = r["tilt"] + inst["tilt"] + 0.3 * (1 - velocity / 127)
    amps = _harm_amps(k, tilt, r.get("odd", False)) * inst["colour"][:k]
    if r.get("formants"):
        amps *= _peaks(f0 * np.arange(1, k + 1), [(f * inst["fscale"], g) for f, g in r["formants"]])
    y = _osc(n, sr, f0, amps, rng, r.get("vib"))
    if r.get("detune"):
        y += _osc(n, sr, f0 * 2 ** (r["detune"] / 12), amps, rng)
    t = np.arange(n, dtype=np.float32) / sr
    for ratio, amp in r.get("partials", ()):
        if f0 * ratio < 0.45 * sr:
            y += (amp * np.sqrt(2) * np.exp(-t * ratio) * np.sin(2 * np.pi * f0 * ratio * t)).astype(np.float32)
    if r.get("noise"):
        lo, hi, level = r["noise"]
        y += level * inst["noise"] * _band_noise(n, sr, lo, hi, rng)
    env = np.minimum(t / r["attack"], 1.0)
    if r.get("decay"):
        env *= np.exp(-t / (r["decay"] * inst["tau"]))
    if r.get("am"):
        env *= 1 - r["am"][1] * 0.5 * (1 - np.cos(2 * np.pi * r["am"][0] * t))
    rel = t > 3.0
    env[rel] *= np.exp(-(t[rel] - 3.0) / (0.15 * inst["tau"]))
    y *= env
    y = _add_noise(y, rng.uniform(40, 60), rng)
    return _peak_norm(y, 0.9 * (velocity / 127) ** 0.7)


def _make_nsynth(out: Path, rng: np.random.Generator) -> tuple[Path, list[AwkwardFile], int]:
    out.mkdir(parents=True, exist_ok=True)
    plan = {"nsynth-train": (4, 5), "nsynth-valid": (1, 5), "nsynth-test": (1, 5)}  # instruments x notes
    inst_ids = iter(rng.choice(1000, size=200, replace=False))
    note_ids = iter(rng.choice(300000, size=2000, replace=False))
    counters: dict[tuple[int, int], int] = {}
    total = 0
    for split, (n_inst, n_notes) in plan.items():
        sdir = out / split
        _prepare_root(sdir)
        examples = {}
        for fi, fam in enumerate(NSYNTH_FAMILIES):
            if fam == "synth_lead" and split != "nsynth-train":
                continue  # as in the real valid/test splits
            r = _NSYNTH_RECIPES[fam]
            for _ in range(n_inst):
                src = int(rng.choice(r["src"]))
                num = counters.get((fi, src), int(rng.integers(0, 5)))
                counters[(fi, src)] = num + 1 + int(rng.integers(0, 3))
                inst_str = f"{fam}_{NSYNTH_SOURCES[src]}_{num:03d}"
                inst = dict(tilt=rng.normal(0, 0.15), tau=float(np.exp(rng.normal(0, 0.25))),
                            colour=rng.uniform(0.6, 1.4, 64), fscale=rng.uniform(0.9, 1.1),
                            noise=rng.uniform(0.5, 1.5), id=int(next(inst_ids)))
                combos = [(p, v) for p in range(r["pitch"][0], r["pitch"][1] + 1) for v in (25, 50, 75, 100, 127)]
                pick = rng.choice(len(combos), size=n_notes, replace=False)
                for j in sorted(pick):
                    pitch, velocity = combos[j]
                    note_str = f"{inst_str}-{pitch:03d}-{velocity:03d}"
                    x = _nsynth_note(fam, inst, pitch, velocity, rng)
                    _write(sdir / "audio" / f"{note_str}.wav", x, 16000)
                    qual = [0] * len(NSYNTH_QUALITIES)
                    for qi, q in enumerate(NSYNTH_QUALITIES):
                        p = 0.6 if fam in _NSYNTH_QUAL_P.get(q, ()) else 0.08
                        qual[qi] = int(rng.uniform() < p)
                    examples[note_str] = {
                        "qualities": qual,
                        "pitch": pitch,
                        "note": int(next(note_ids)),
                        "instrument_source_str": NSYNTH_SOURCES[src],
                        "velocity": velocity,
                        "instrument_str": inst_str,
                        "instrument": inst["id"],
                        "sample_rate": 16000,
                        "qualities_str": [q for q, b in zip(NSYNTH_QUALITIES, qual) if b],
                        "instrument_source": src,
                        "note_str": note_str,
                        "instrument_family": fi,
                        "instrument_family_str": fam,
                    }
        (sdir / "examples.json").write_text(json.dumps(examples, indent=2))
        total += len(examples)
    return out, [], total


# --------------------------------------------------------------------------
# speech (LibriSpeech speakers, Speech Commands words)

_VOWELS = [(270, 2290, 3010), (390, 1990, 2550), (530, 1840, 2480), (660, 1720, 2410), (730, 1090, 2440),
           (570, 840, 2410), (440, 1020, 2240), (300, 870, 2240), (640, 1190, 2390), (490, 1350, 1690)]
_FRICATIVES = [(4000, 7500, 0.35), (2000, 5000, 0.35), (1200, 7500, 0.15), (500, 3500, 0.12)]  # s sh f h
_PLOSIVES = [(300, 1500), (2500, 6000), (1500, 3500)]  # p t k
_NASAL = (250, 1200, 2300)


def _speaker(rng: np.random.Generator, sex: str) -> dict:
    return dict(
        f0=rng.uniform(95, 140) if sex == "M" else rng.uniform(170, 240),
        fscale=rng.uniform(0.88, 1.0) if sex == "M" else rng.uniform(1.0, 1.18),
        tilt=rng.uniform(0.7, 1.5),
        res=(rng.uniform(2600, 4200), rng.uniform(0.3, 1.2)),   # speaker-specific resonance
        dip=(rng.uniform(800, 2200), rng.uniform(0.0, 0.8)),      # and an anti-resonance
        breath=rng.uniform(0.02, 0.15),
        rate=rng.uniform(0.85, 1.15),
    )


def _vowel(n: int, sr: int, spk: dict, formants, f0: float, rng: np.random.Generator,
           glide: float = 0.0) -> np.ndarray:
    k = int(0.45 * sr / (f0 * 1.1))
    fk = f0 * np.arange(1, k + 1)
    amps = (fk / 100.0) ** -spk["tilt"] * _peaks(fk, [(f * spk["fscale"], g) for f, g in
                                                       zip(formants, (1.0, 0.6, 0.3))])
    amps *= 1 + spk["res"][1] / (1 + ((fk - spk["res"][0]) / 300) ** 2)
    amps *= 1 - spk["dip"][1] / (1 + ((fk - spk["dip"][0]) / 200) ** 2)
    y = _osc(n, sr, f0, amps, rng, (rng.uniform(4, 6), 0.01), glide)
    y += spk["breath"] * _band_noise(n, sr, 500, 6000, rng)
    w = np.sqrt(np.abs(np.sin(np.linspace(0, np.pi, n, dtype=np.float32))))
    return y * w


def _consonant(n: int, sr: int, kind: int, rng: np.random.Generator) -> np.ndarray:
    """kind 0-3 fricatives (s, sh, f, h), 4-6 plosive bursts (p, t, k)."""
    if kind < 4:
        lo, hi, level = _FRICATIVES[kind]
        y = level * _band_noise(n, sr, lo, hi, rng)
        return y * np.sin(np.linspace(0, np.pi, n, dtype=np.float32))
    lo, hi = _PLOSIVES[kind - 4]
    y = 0.6 * _band_noise(n, sr, lo, hi, rng)
    y[: n // 3] = 0  # closure, then release
    tail = np.exp(-np.arange(n - n // 3, dtype=np.float32) / (0.2 * n))
    y[n // 3:] *= tail
    return y


def _phones(phones, sr: int, spk: dict, rng: np.random.Generator, rate: float = 1.0,
            f0: float | None = None) -> np.ndarray:
    """Render a phone sequence: ("V", vowel index, dur s) / ("C", kind, dur s) /
    ("N", 0, dur s) nasal / ("_", 0, dur s) silence."""
    f0 = spk["f0"] if f0 is None else f0
    parts = []
    for i, (kind, idx, dur) in enumerate(phones):
        n = max(16, int(dur / rate * sr))
        if kind == "V":
            glide = rng.uniform(-0.15, 0.05)
            parts.append(_vowel(n, sr, spk, _VOWELS[idx], f0 * rng.uniform(0.93, 1.07), rng, glide))
        elif kind == "N":
            parts.append(0.5 * _vowel(n, sr, spk, _NASAL, f0, rng))
        elif kind == "C":
            parts.append(_consonant(n, sr, idx, rng))
        else:
            parts.append(np.zeros(n, np.float32))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


# --------------------------------------------------------------------------
# LibriSpeech

_WORDS = ("THE OF AND TO A IN THAT HE WAS IT HIS HER WITH AS FOR HAD YOU NOT BE ON AT BY WHICH SHE "
          "THEY BUT FROM ALL WERE THIS WOULD THERE WHEN ONE SAID WHAT SO NO LITTLE UPON MORE SOME "
          "OLD HOUSE DAY NIGHT WATER LIGHT BEFORE AGAIN NEVER MIGHT HAND EYES ROOM DOOR LONG "
          "THOUGHT TOWN CAPTAIN MOTHER WINDOW GARDEN RIVER DON'T I'M").split()


def _utterance_phones(n_words: int, rng: np.random.Generator) -> list:
    phones = [("_", 0, rng.uniform(0.1, 0.35))]
    for w in range(n_words):
        for _ in range(int(rng.integers(1, 4))):
            if rng.uniform() < 0.6:
                c = int(rng.integers(0, 7))
                phones.append(("C", c, rng.uniform(0.05, 0.11)))
            elif rng.uniform() < 0.5:
                phones.append(("N", 0, rng.uniform(0.04, 0.08)))
            phones.append(("V", int(rng.integers(0, len(_VOWELS))), rng.uniform(0.08, 0.2)))
        phones.append(("_", 0, rng.uniform(0.3, 0.5) if rng.uniform() < 0.12 else rng.uniform(0.0, 0.06)))
    phones.append(("_", 0, rng.uniform(0.1, 0.35)))
    return phones


def _make_librispeech(out: Path, rng: np.random.Generator) -> tuple[Path, list[AwkwardFile], int]:
    root = out / ROOT_NAMES["librispeech"]
    _prepare_root(root)
    sr = 16000
    spk_ids = sorted(int(i) for i in rng.choice(np.arange(19, 8000), size=10, replace=False))
    order = rng.permutation(10)
    subsets = {"train-clean-100": [spk_ids[i] for i in sorted(order[:8])],
               "test-clean": [spk_ids[i] for i in sorted(order[8:])]}
    # chapters x utterances; three chapters a speaker so that the chapter-disjoint
    # protocol has a training, a validation and a test chapter
    plan = {"train-clean-100": (3, 4), "test-clean": (1, 4)}
    chapter_ids = iter(int(c) for c in rng.choice(np.arange(100, 300000), size=40, replace=False))
    speakers_txt = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    chapters_txt = [";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE   | PROJECT TITLE"]
    awkward, count = [], 0
    for subset, ids in subsets.items():
        n_ch, n_utt = plan[subset]
        for si, spk_id in enumerate(ids):
            sex = "F" if (si + len(subset)) % 2 == 0 else "M"
            spk = _speaker(rng, sex)
            seconds = 0.0
            for _ in range(n_ch):
                ch = next(chapter_ids)
                chan = (rng.uniform(-0.15, 0.15), rng.uniform(30, 45))  # session tilt, SNR
                d = root / subset / str(spk_id) / str(ch)
                d.mkdir(parents=True, exist_ok=True)
                trans = []
                ch_seconds = 0.0
                for u in range(n_utt):
                    long_one = subset == "train-clean-100" and si == 0 and not awkward
                    target = 24.0 if long_one else rng.uniform(2.0, 5.0)
                    n_words = max(2, int(round(target * 1.9)))
                    rate = spk["rate"] * rng.uniform(0.92, 1.08)
                    s2 = dict(spk, tilt=spk["tilt"] + chan[0])
                    x = _phones(_utterance_phones(n_words, rng), sr, s2, rng, rate,
                                spk["f0"] * rng.uniform(0.92, 1.08))
                    x = _peak_norm(_add_noise(x, chan[1], rng), rng.uniform(0.3, 0.9))
                    uid = f"{spk_id}-{ch}-{u:04d}"
                    path = d / f"{uid}.flac"
                    _write(path, x, sr, "PCM_16", "FLAC")
                    if long_one:
                        awkward.append(AwkwardFile(path, f"long utterance ({len(x) / sr:.1f} s)",
                                                   {"duration_min": 20.0}))
                    words = [str(w) for w in rng.choice(_WORDS, size=n_words)]
                    trans.append(f"{uid} {' '.join(words)}")
                    ch_seconds += len(x) / sr
                    count += 1
                (d / f"{spk_id}-{ch}.trans.txt").write_text("\n".join(trans) + "\n")
                chapters_txt.append(f"{ch:<7}| {spk_id:<5}| {ch_seconds / 60:5.2f} | {subset:<17}| "
                                    f"{int(rng.integers(1000, 9999)):<5}| {int(rng.integers(100, 9999)):<6}| "
                                    f"Chapter {ch % 40 + 1:<4}| Demo Book {spk_id}")
                seconds += ch_seconds
            speakers_txt.append(f"{spk_id:<5}| {sex} | {subset:<17}| {seconds / 60:5.2f} | Demo Reader {spk_id}")
    (root / "SPEAKERS.TXT").write_text("\n".join(speakers_txt) + "\n")
    (root / "CHAPTERS.TXT").write_text("\n".join(chapters_txt) + "\n")
    (root / "README.TXT").write_text(
        "LibriSpeech (synthetic demo)\n\nSynthetic 'speech' (formant-shaped harmonic syllables, one spectral\n"
        "envelope per speaker) in the layout of LibriSpeech; transcripts are random words. Written by common.data.demo.\n")
    return root, awkward, count


# --------------------------------------------------------------------------
# Speech Commands v0.02

SC_WORDS = ["backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
            "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
            "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero"]
SC_CORE = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SC_TEST_PER_CLASS = 5  # clips per class in each demo test archive (real: ~257 in v0.01, ~408 in v0.02)
_MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1


def which_set(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """The official Speech Commands partition of a file (from the dataset README)."""
    base_name = Path(filename).name
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def _word_recipes() -> dict[str, list]:
    """A fixed phone sequence per word (same for every seed), pairwise differing
    in at least two of (onset, vowel 1, vowel 2, coda)."""
    g = np.random.default_rng(20170803)
    sigs: list[tuple] = []
    while len(sigs) < len(SC_WORDS):
        s = (int(g.integers(-1, 7)), int(g.integers(0, 10)), int(g.integers(-1, 10)), int(g.integers(-1, 7)))
        if all(sum(a != b for a, b in zip(s, o)) >= 2 for o in sigs):
            sigs.append(s)
    recipes = {}
    for word, (onset, v1, v2, coda) in zip(SC_WORDS, sigs):
        ph = []
        if onset >= 0:
            ph.append(("C", onset, float(g.uniform(0.06, 0.12))))
        ph.append(("V", v1, float(g.uniform(0.12, 0.25))))
        if v2 >= 0:
            ph.append(("V", v2, float(g.uniform(0.1, 0.2))))
        if coda >= 0:
            ph.append(("C", coda, float(g.uniform(0.06, 0.12))))
        recipes[word] = ph
    return recipes


_SC_README = """# Speech Commands Data Set v0.02 (synthetic demo)

Synthetic stand-in for the Speech Commands data set, written by common.data.demo.
No recording in it is real: every clip is a synthetic 'word' (a fixed phone
sequence per word, rendered with a per-speaker voice).

The real data set is a set of one-second .wav audio files, each containing a
single spoken English word, licensed CC BY 4.0 by Google, originally at
http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz.

## Organization

The files are organized into folders named after the word they contain. The
first part of a file name (before `_nohash_`) is a stable speaker id; the
number at the end distinguishes repetitions of a word by that speaker, e.g.
`happy/3cfc6b3a_nohash_2.wav`.

## Partitioning

As in the real data set, a hash of the speaker id assigns each file to a set
(validation 10%, testing 10%; see `which_set` in the real README and in
common/data/demo.py), so all clips of a speaker are on one side.
`validation_list.txt` and `testing_list.txt` hold the paths of the validation
and test files; files in neither list are training files.

## Processing

16-bit little-endian PCM WAVE files at 16000 Hz, one second long; a few are
shorter, as in the real data set, and must be padded.

## Background Noise

The `_background_noise_` folder holds longer noise clips; see its README.md.
"""

_SC_NOISE_README = """This folder contains a set of longer audio clips that are synthetic noise
(written by common.data.demo, in place of the real recordings and simulations):

- white_noise.wav: white noise.
- pink_noise.wav: pink (1/f) noise.
- running_tap.wav: band-limited noise with slow fluctuations, like running water.
- doing_the_dishes.wav: clinks (short decaying tones) over low noise.
"""


def _make_speech_commands(out: Path, rng: np.random.Generator) -> tuple[Path, list[AwkwardFile], int]:
    root = out / ROOT_NAMES["speech_commands"]
    _prepare_root(root)
    sr = 16000
    want = {"training": 10, "validation": 2, "testing": 2}
    have = _sc_speakers(want, set(), rng)
    speakers = [(h, s) for s in want for h in have[s]]
    voices = {h: _speaker(rng, "F" if i % 2 else "M") for i, (h, _) in enumerate(speakers)}
    recipes = _word_recipes()
    lists = {"validation": [], "testing": []}
    awkward, count = [], 0
    for word in SC_WORDS:
        reps = 2 if word in SC_CORE else 1
        for h, split in speakers:
            spk = voices[h]
            for rep in range(reps):
                clip, short = _sc_clip(recipes[word], spk, sr, rng)
                n = len(clip)
                rel = f"{word}/{h}_nohash_{rep}.wav"
                _write(root / rel, clip, sr)
                if short:
                    awkward.append(AwkwardFile(root / rel, f"shorter than 1 s ({n / sr:.2f} s)",
                                               {"duration_max": 0.999}))
                if split != "training":
                    lists[split].append(rel)
                count += 1
    (root / "validation_list.txt").write_text("\n".join(sorted(lists["validation"])) + "\n")
    (root / "testing_list.txt").write_text("\n".join(sorted(lists["testing"])) + "\n")
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir(parents=True, exist_ok=True)
    n = int(15 * sr)
    _write(noise_dir / "white_noise.wav", _peak_norm(rng.standard_normal(n, dtype=np.float32), 0.5), sr)
    _write(noise_dir / "pink_noise.wav", _peak_norm(_band_noise(n, sr, 20, 8000, rng, slope=0.5), 0.5), sr)
    n = int(12 * sr)
    tap = _band_noise(n, sr, 500, 6000, rng) * (1 + 0.4 * _band_noise(n, sr, 0.5, 8, rng))
    _write(noise_dir / "running_tap.wav", _peak_norm(tap, 0.4), sr)
    n = int(18 * sr)
    dishes = 0.3 * _band_noise(n, sr, 100, 3000, rng)
    clinks = _render(dict(f0=2500, harm=3, tilt=1.0, jitter=4.0, bursts=(1.5, 0.25, "decay")), n, sr, rng)
    _write(noise_dir / "doing_the_dishes.wav", _peak_norm(dishes + 3 * clinks, 0.6), sr)
    (noise_dir / "README.md").write_text(_SC_NOISE_README)
    (root / "README.md").write_text(_SC_README)
    (root / "LICENSE").write_text(
        "Synthetic demo data written by common.data.demo: no real recordings; free to use.\n"
        "The layout mirrors Speech Commands v0.02 (Creative Commons Attribution 4.0, Google).\n")
    used = {h for h, _ in speakers}
    for version, words in (("v0.01", [w for w in SC_WORDS if w not in V2_ONLY_WORDS]), ("v0.02", SC_WORDS)):
        count += _make_sc_test_archive(out / f"speech_commands_test_set_{version}", version, words, recipes, used,
                                       rng)
    return root, awkward, count


def _sc_speakers(want: dict[str, int], used: set[str], rng: np.random.Generator) -> dict[str, list[str]]:
    """Speaker hashes that the official hash puts in each set (`want`: set -> count)."""
    have = {k: [] for k in want}
    while any(len(have[k]) < want[k] for k in want):
        h = f"{int(rng.integers(0, 2 ** 32)):08x}"
        s = which_set(f"{h}_nohash_0.wav")
        if s in want and len(have[s]) < want[s] and h not in used and all(h not in v for v in have.values()):
            have[s].append(h)
    return have


def _sc_clip(phones, spk: dict, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """One word by one speaker at a random place in a 1 s clip (12% of the clips
    shorter, as in the real set), with added noise; (clip, shorter)."""
    rate = spk["rate"] * rng.uniform(0.85, 1.15)
    x = _phones(phones, sr, spk, rng, rate, spk["f0"] * rng.uniform(0.92, 1.08))
    short = rng.uniform() < 0.12
    n = int(rng.uniform(0.55, 0.95) * sr) if short else sr
    x = x[: n - 160]
    clip = np.zeros(n, np.float32)
    off = int(rng.integers(0, n - len(x) + 1))
    clip[off:off + len(x)] = x
    clip = _add_noise(clip, rng.uniform(18, 35), rng, ref=_rms(x))
    return _peak_norm(clip, rng.uniform(0.2, 0.9)), short


def _make_sc_test_archive(root: Path, version: str, words: list[str], recipes: dict, used: set[str],
                          rng: np.random.Generator, per_class: int = SC_TEST_PER_CLASS) -> int:
    """The official 12-class test archive's layout: one folder per class (10
    commands, `_unknown_` holding other words, `_silence_` holding 1 s of
    background noise), `per_class` clips each, by speakers of the testing hash."""
    _prepare_root(root)
    sr = 16000
    hashes = _sc_speakers({"testing": per_class}, used, rng)["testing"]
    used.update(hashes)
    others = [w for w in words if w not in SC_CORE]
    for label in (*SC_CORE, "_unknown_", "_silence_"):
        (root / label).mkdir()
        for i, h in enumerate(hashes):
            if label == "_silence_":
                clip = _peak_norm(_band_noise(sr, sr, 20, 8000, rng, slope=float(rng.uniform(0, 1))),
                                  rng.uniform(0.01, 0.3))
            else:
                word = str(rng.choice(others)) if label == "_unknown_" else label
                clip, _ = _sc_clip(recipes[word], _speaker(rng, "F" if i % 2 else "M"), sr, rng)
            _write(root / label / f"{h}_nohash_{i}.wav", clip, sr)
    (root / "LICENSE").write_text(
        "Synthetic demo data written by common.data.demo: no real recordings; free to use.\n"
        f"The layout mirrors speech_commands_test_set_{version} (Creative Commons Attribution 4.0, Google).\n")
    return 12 * per_class


# --------------------------------------------------------------------------
# ICBHI 2017

_ICBHI_DEVICES = {"AKGC417L": 44100, "Meditron": 10000, "Litt3200": 4000, "LittC2SE": 4000}
_ICBHI_LOCATIONS = ["Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr"]
_ICBHI_ABNORMAL_DX = ["COPD", "COPD", "Pneumonia", "Bronchiectasis", "Asthma", "LRTI", "Bronchiolitis", "COPD"]
_ICBHI_NORMAL_DX = ["Healthy", "URTI"]


def _icbhi_recording(dur: float, sr: int, cycles, rng: np.random.Generator) -> np.ndarray:
    n = int(round(dur * sr))
    t = np.arange(n, dtype=np.float32) / sr
    hi = min(1200.0, 0.45 * sr)
    breath = _band_noise(n, sr, 80, hi, rng, slope=0.6)
    env = np.full(n, 0.15, np.float32)
    for start, end, _, _ in cycles:
        a, b = int(start * sr), int(end * sr)
        m = b - a
        insp = int(m * rng.uniform(0.35, 0.45))
        env[a:a + insp] += np.sin(np.linspace(0, np.pi, insp, dtype=np.float32))
        env[a + insp:b] += 0.6 * np.sin(np.linspace(0, np.pi, m - insp, dtype=np.float32))
    x = 0.3 * breath * env
    beat = _bursts(n, sr, rng.uniform(1.0, 1.4), 0.08, rng, "decay")
    x += 0.25 * beat * np.sin(2 * np.pi * rng.uniform(40, 70) * t)
    for start, end, crackle, wheeze in cycles:
        a, b = int(start * sr), int(end * sr)
        if wheeze:
            m = int(rng.uniform(0.6, 0.95) * (b - a))
            s = a + int(rng.integers(0, b - a - m + 1))
            f0 = rng.uniform(350, 550)
            tone = _osc(m, sr, f0, np.array([1.0, 0.4, 0.15]), rng, (rng.uniform(2, 6), 0.02), rng.uniform(-0.2, 0.2))
            x[s:s + m] += rng.uniform(0.8, 1.4) * tone * np.abs(np.hanning(m)).astype(np.float32) ** 0.3
        if crackle:  # short clicks (damped sine with a broadband edge), dense enough to
            # change the cycle's average spectrum (mean-pooled features must see them)
            for _ in range(max(8, int(rng.uniform(30, 50) * (end - start)))):
                L = int(rng.uniform(0.005, 0.02) * sr)
                s = a + int(rng.integers(0, max(1, b - a - L)))
                f = rng.uniform(900, 1500)
                tt = np.arange(L, dtype=np.float32) / sr
                click = np.exp(-tt / (L / sr / 4)) * np.sin(2 * np.pi * f * tt)
                click[: max(1, L // 8)] += rng.standard_normal(max(1, L // 8), dtype=np.float32)
                x[s:s + L] += rng.uniform(1.0, 2.0) * click
    x = _add_noise(x, rng.uniform(25, 40), rng)
    return _peak_norm(x, rng.uniform(0.3, 0.9))


def _make_icbhi(out: Path, rng: np.random.Generator) -> tuple[Path, list[AwkwardFile], int]:
    root = out / ROOT_NAMES["icbhi"]
    _prepare_root(root)
    n_pat = 20
    pids = sorted(int(p) for p in rng.choice(np.arange(101, 227), size=n_pat, replace=False))
    abnormal = np.zeros(n_pat, bool)
    abnormal[rng.permutation(n_pat)[: n_pat // 2]] = True
    # patient-level split ~60/40, half abnormal on each side
    test = set()
    for flag in (True, False):
        group = [i for i in range(n_pat) if abnormal[i] == flag]
        test.update(int(i) for i in rng.permutation(group)[: round(0.4 * len(group))])
    devices = list(_ICBHI_DEVICES)
    split_lines, diag_lines, awkward = [], [], []
    count = 0
    for i, pid in enumerate(pids):
        dx = (_ICBHI_ABNORMAL_DX[int(rng.integers(0, len(_ICBHI_ABNORMAL_DX)))] if abnormal[i]
              else _ICBHI_NORMAL_DX[int(rng.integers(0, 2))])
        diag_lines.append(f"{pid}\t{dx}")
        device = devices[(i + int(abnormal[i])) % len(devices)]
        sr = _ICBHI_DEVICES[device]
        mc = rng.uniform() < 0.5
        locs = rng.choice(_ICBHI_LOCATIONS, size=2, replace=False)
        # multichannel (mc): one recording id at two locations; sc: two recording ids
        recs = ([f"1b{int(rng.integers(1, 4))}"] * 2 if mc
                else [f"{r + 1}b{int(rng.integers(1, 4))}" for r in range(2)])
        for r, rec in enumerate(recs):
            name = f"{pid}_{rec}_{locs[r]}_{'mc' if mc else 'sc'}_{device}"
            dur = round(float(rng.uniform(10, 20)), 3)
            cycles, pos = [], round(float(rng.uniform(0.0, 0.6)), 3)
            while True:
                length = float(rng.uniform(1.5, 4.0))
                end = round(pos + length, 3)
                if end > dur - 0.05:
                    break
                if abnormal[i]:
                    c = int(rng.choice(4, p=[0.15, 0.3, 0.3, 0.25]))
                else:
                    c = 0
                cycles.append((pos, end, int(c in (1, 3)), int(c in (2, 3))))
                pos = round(end + float(rng.uniform(0.0, 0.3)), 3)
            if abnormal[i] and not any(cr or wh for _, _, cr, wh in cycles):
                s, e, _, _ = cycles[int(rng.integers(0, len(cycles)))]
                cycles = [(a, b, 1, 0) if a == s else (a, b, cr, wh) for a, b, cr, wh in cycles]
            x = _icbhi_recording(dur, sr, cycles, rng)
            _write(root / f"{name}.wav", x, sr)
            (root / f"{name}.txt").write_text(
                "".join(f"{s:.3f}\t{e:.3f}\t{cr}\t{wh}\n" for s, e, cr, wh in cycles))
            split_lines.append(f"{name}\t{'test' if i in test else 'train'}")
            if sr != 44100:
                awkward.append(AwkwardFile(root / f"{name}.wav", f"{sr} Hz ({device})", {"samplerate": sr}))
            count += 1
    (root / "ICBHI_challenge_train_test.txt").write_text("\n".join(split_lines) + "\n")
    (root / "ICBHI_Challenge_diagnosis.txt").write_text("\n".join(diag_lines) + "\n")
    return root, awkward, count


# --------------------------------------------------------------------------

_MAKERS = {
    "esc50": _make_esc50,
    "urbansound8k": _make_us8k,
    "nsynth": _make_nsynth,
    "librispeech": _make_librispeech,
    "speech_commands": _make_speech_commands,
    "icbhi": _make_icbhi,
}


def _make_one(task: str, out: Path, seed: int):
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _TASK_CODE[task]]))
    return _MAKERS[task](out, rng)


def make_demo_datasets(out_dir: str | Path, tasks=None, seed: int = 0, workers: int = 1) -> DemoRoots:
    """Write the demo datasets for `tasks` (default: all six) under `out_dir`
    and return {task: root Path} (a `DemoRoots` dict, which also carries
    `.awkward` and `.counts`). Byte-identical output for a given seed, whatever
    `workers` (processes generating tasks in parallel)."""
    out = Path(out_dir)
    tasks = list(TASKS) if not tasks else list(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in _MAKERS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    out.mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(min(workers, len(tasks))) as pool:
            futures = {t: pool.submit(_make_one, t, out, seed) for t in tasks}
            results = {t: f.result() for t, f in futures.items()}
    else:
        results = {t: _make_one(t, out, seed) for t in tasks}
    roots = DemoRoots()
    for task in tasks:
        root, awkward, count = results[task]
        roots[task] = root
        roots.awkward[task] = awkward
        roots.counts[task] = count
    return roots


@entry_point
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.data.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="directory to write the datasets into")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=None, metavar="TASK",
                        help=f"tasks to generate (default: all): {', '.join(TASKS)}")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed (same seed, same bytes; default 0)")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="processes generating tasks in parallel (output does not depend on it; default 2)")
    parser.add_argument("--quiet", action="store_true", help="do not list the awkward files")
    args = add_debug_option(parser).parse_args(argv)
    t0 = time.perf_counter()
    roots = make_demo_datasets(args.out, args.tasks, args.seed, args.workers)  # a foreign folder: one-line error
    for task, root in roots.items():
        print(f"{task:16s} {roots.counts[task]:4d} audio files -> {root}")
        if not args.quiet:
            awk = roots.awkward[task]
            for a in awk[:12]:
                print(f"{'':16s}   awkward: {a.path.relative_to(root)}  ({a.why})")
            if len(awk) > 12:
                print(f"{'':16s}   ... and {len(awk) - 12} more ({', '.join(sorted({a.why.split(' (')[0] for a in awk[12:]}))})")
    print(f"done in {time.perf_counter() - t0:.1f} s (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

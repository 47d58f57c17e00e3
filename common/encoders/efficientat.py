"""`efficientat_mn04`: EfficientAT mn04_as (Schmid et al. 2023), a width-0.4
MobileNetV3 distilled from PaSST on AudioSet (mAP .432), 32 kHz.

The network is torchvision's `mobilenet_v3_large(width_mult=0.4).features`
with the differences of EfficientAT's own MobileNetV3 ("mn"):
  * the first conv takes 1 input channel (a log-mel spectrogram);
  * each squeeze-excitation block is stored under `.conc_se_layers.0.` with
    2-D `fc1`/`fc2` Linear weights (here: 1x1 convs, so two singleton dims
    are added) and gates with a plain sigmoid (torchvision: hardsigmoid);
  * the head is `classifier.2` Linear(384 -> 512) + Hardswish +
    `classifier.5` Linear(512 -> 527) on the global average pool.
The official checkpoint `mn04_as_mAP_432.pt` is a plain state dict; it is
remapped to torchvision's key names and loaded strictly.

Front end (EfficientAT `AugmentMelSTFT` in eval mode): pre-emphasis
y[n] = x[n+1] - 0.97 x[n] (a valid 2-tap conv, one sample shorter), centred
STFT n_fft 1024, hop 320, win_length 800 symmetric Hann (zero-padded to 1024),
power spectrum, 128 Kaldi/HTK triangular mel bands (mel = 1127 ln(1 + f/700))
on the first 512 bins with the Nyquist bin weighted 0, log(x + 1e-5),
(x + 4.5) / 5.

Mel upper edge: EfficientAT's `AugmentMelSTFT(fmax=None)`, which its
`inference.py` and AudioSet evaluation use, sets fmax = sr/2 - fmax_aug_range/2
= 16000 - 1000 = 15000 Hz in eval mode (training draws fmax in (14, 16] kHz).
That reference value is the default here; option `fmax=16000` gives the 0-16
kHz banks that /work/shared/pretrained/README.md describes.

Input length: the whole clip. The network is fully convolutional with a
global average pool; EVAR feeds its models each clip whole (the task's full
`unit_sec`, `evar/ds_tasks.py`), and EfficientAT's own HEAR wrapper
(`fschmid56/EfficientAT_HEAR`, `hear_mn/hear_wrapper.py`,
`MNHearWrapper.get_scene_embeddings`) feeds whole clips up to its
`max_model_window` of 10 s and averages 10 s windows every 2.5 s beyond.
Here clips longer than `WHOLE_CLIP_SECONDS` (120 s) are cut into windows of
that length, only to bound memory (option `window_seconds=S`;
`window_seconds=10` gives the 10 s windows of earlier versions).

Layers:
  features   [B, N, 384]  last feature map averaged over frequency, one frame
                          per 32 STFT hops (0.32 s)
  embedding  [B, 1, 384]  global average pool of the last feature map (the
                          reference's `features` output), default
`tag()` gives the 527 AudioSet class probabilities; `labels` their names.
"""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..options import positive_float
from .base import WHOLE_CLIP_SECONDS, Encoder, Layer, seconds_option
from .checkpoints import CheckpointError, load_strict, local_or_fetched, read_state_dict

CHECKPOINT_NAME = "mn04_as_mAP_432.pt"
LABELS_NAME = "class_labels_indices.csv"
CHECKPOINT_SOURCE = ("the EfficientAT GitHub release v0.0.1 (fschmid56/EfficientAT, MIT licence): "
                     f"copy {CHECKPOINT_NAME} and {LABELS_NAME} into pretrained_models/efficientat_mn04/")

SAMPLE_RATE = 32000
N_FFT = 1024
WIN_LENGTH = 800
HOP_SIZE = 320
N_MELS = 128
FMIN = 0.0
FMAX = 15000.0  # EfficientAT AugmentMelSTFT(fmax=None) in eval mode, see module docstring
PREEMPHASIS = 0.97
EMBED_DIM = 384
HIDDEN_DIM = 512
CLASSES_NUM = 527
TIME_DOWNSAMPLING = 32  # stride-2 first conv + four stride-2 blocks


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, fmin: float, fmax: float) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters on the Kaldi/HTK mel scale,
    equal to `torchaudio.compliance.kaldi.get_mel_banks(n_mels, n_fft, sr,
    fmin, fmax, 100, -500, 1.0)` (no VTLN warp) padded with a zero column for
    the Nyquist bin."""
    # Same operations and dtypes as torchaudio's, so the banks match bit for bit.
    if fmax <= 0:
        fmax += 0.5 * sample_rate
    mel_low = 1127.0 * math.log(1.0 + fmin / 700.0)
    mel_high = 1127.0 * math.log(1.0 + fmax / 700.0)
    delta = (mel_high - mel_low) / (n_mels + 1)
    index = torch.arange(n_mels).unsqueeze(1)
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    freqs = (sample_rate / n_fft) * torch.arange(n_fft / 2)
    bins = (1127.0 * (1.0 + freqs / 700.0).log()).unsqueeze(0)
    up = (bins - left) / (center - left)
    down = (right - bins) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


class MelFrontEnd(nn.Module):
    """[B, T] waveform at 32 kHz -> [B, 1, 128, 1 + (T - 1) // 320] normalised log-mel."""

    def __init__(self, fmax: float = FMAX):
        super().__init__()
        self.register_buffer("window", torch.hann_window(WIN_LENGTH, periodic=False), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-PREEMPHASIS, 1.0]]]), persistent=False)
        self.register_buffer("mel_banks", kaldi_mel_banks(N_MELS, N_FFT, SAMPLE_RATE, FMIN, fmax),
                             persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(waveforms.unsqueeze(1), self.preemphasis).squeeze(1)
        spec = torch.stft(x, N_FFT, hop_length=HOP_SIZE, win_length=WIN_LENGTH, window=self.window,
                          center=True, pad_mode="reflect", normalized=False, return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # [B, 513, frames]
        mel = torch.matmul(self.mel_banks, power)  # [B, 128, frames]
        return ((torch.log(mel + 1e-5) + 4.5) / 5.0).unsqueeze(1)


def build_mn04() -> tuple[nn.Sequential, nn.Sequential]:
    """EfficientAT mn04 feature extractor and MLP head, with torchvision modules."""
    from torchvision.ops.misc import SqueezeExcitation
    from torchvision.models import mobilenet_v3_large

    features = mobilenet_v3_large(weights=None, width_mult=0.4).features
    first = features[0][0]
    features[0][0] = nn.Conv2d(1, first.out_channels, first.kernel_size, first.stride, first.padding,
                               bias=False)
    for module in features.modules():
        if isinstance(module, SqueezeExcitation):
            module.scale_activation = nn.Sigmoid()
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(EMBED_DIM, HIDDEN_DIM),
                               nn.Hardswish(), nn.Dropout(0.2), nn.Linear(HIDDEN_DIM, CLASSES_NUM))
    return features, classifier


def remap_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EfficientAT key names and SE weight shapes -> torchvision's."""
    out = {}
    for key, value in state.items():
        if ".conc_se_layers.0." in key:
            key = key.replace(".conc_se_layers.0.", ".")
            if key.endswith((".fc1.weight", ".fc2.weight")) and value.ndim == 2:
                value = value[:, :, None, None]
        out[key] = value
    return out


class MN04(nn.Module):
    def __init__(self, fmax: float = FMAX):
        super().__init__()
        self.mel = MelFrontEnd(fmax)
        self.features, self.classifier = build_mn04()

    def feature_map(self, waveforms: torch.Tensor) -> torch.Tensor:
        """[B, T] -> last feature map [B, 384, mels / 32, frames / 32]."""
        return self.features(self.mel(waveforms))

    def logits(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.classifier(fmap)


class EfficientATEncoder(Encoder):
    sample_rate = SAMPLE_RATE
    window_seconds = WHOLE_CLIP_SECONDS  # whole clips (see the module docstring)
    # The centred STFT reflect-pads 512 samples, so it needs > 512 samples
    # after pre-emphasis; 0.02 s = 640 samples.
    min_seconds = 0.02
    padding_invariant = False  # the global average pool sees padded frames
    options = {"checkpoint": str, "fmax": positive_float, "window_seconds": positive_float}

    def __init__(self, checkpoint: Path | None = None, labels_file: Path | None = None, fmax: float = FMAX,
                 window_seconds: float = WHOLE_CLIP_SECONDS):
        super().__init__()
        self.window_seconds = window_seconds
        self.model = MN04(fmax)
        self.fmax = float(fmax)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        if self.checkpoint is not None:
            state = remap_state_dict(read_state_dict(self.checkpoint))
            # Keys are `features.*` / `classifier.*`; the front end is fixed
            # (non-persistent buffers), so nothing of it is in the checkpoint.
            load_strict(self.model, state, self.checkpoint)
        self.labels = read_labels(labels_file) if labels_file is not None else [
            f"class_{i}" for i in range(CLASSES_NUM)]
        self.layers = [Layer("features", EMBED_DIM), Layer("embedding", EMBED_DIM)]
        self.default_layer = "embedding"

    @classmethod
    def from_options(cls, pretrained_dir: Path, checkpoint: str | None = None, fmax: str | None = None,
                     window_seconds: str | float = WHOLE_CLIP_SECONDS, **options) -> "EfficientATEncoder":
        window = seconds_option(window_seconds, "window_seconds")
        fetched_labels = None
        if checkpoint is None:
            local = Path(pretrained_dir) / "efficientat_mn04" / CHECKPOINT_NAME
            checkpoint = local_or_fetched(local, "efficientat_mn04", "EfficientAT mn04 checkpoint", CHECKPOINT_SOURCE)
            if Path(checkpoint) != local and not (Path(checkpoint).parent / LABELS_NAME).is_file():
                fetched_labels = _fetched_labels(local.parent / LABELS_NAME)
        path = Path(checkpoint)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise CheckpointError(f"EfficientAT mn04 checkpoint not found: expected {path}. Download it from "
                                  f"{CHECKPOINT_SOURCE} (or pass checkpoint=PATH).")
        labels = path.parent / LABELS_NAME
        labels = labels if labels.is_file() else fetched_labels
        return cls(path, labels, float(fmax) if fmax else FMAX, window)

    def config(self) -> dict:
        # the window decides the embeddings of long clips: stores made with
        # another one (10 s windows before whole clips) are never mixed
        cfg = {"fmax": self.fmax, "window_seconds": self.window_seconds}
        if self.checkpoint is None:
            return {"checkpoint": None, **cfg}
        return {"checkpoint": self.checkpoint.name, "checkpoint_bytes": self.checkpoint.stat().st_size, **cfg}

    @torch.no_grad()
    def tag(self, waveforms: torch.Tensor) -> torch.Tensor:
        """AudioSet class probabilities [B, 527] (sigmoid of the logits)."""
        return torch.sigmoid(self.model.logits(self.model.feature_map(waveforms)))

    def forward(self, waveforms, lengths, layers):
        fmap = self.model.feature_map(waveforms)  # [B, 384, F, N]
        batch, num = fmap.shape[0], fmap.shape[3]
        out = {}
        if "features" in layers:
            # Output frame n starts at STFT frame 32 n, i.e. sample 32 n * hop.
            starts = torch.arange(num, device=lengths.device) * (TIME_DOWNSAMPLING * HOP_SIZE)
            mask = starts[None, :] < lengths[:, None]
            mask[:, 0] = True
            out["features"] = (fmap.mean(dim=2).transpose(1, 2), mask)
        if "embedding" in layers:
            embedding = fmap.mean(dim=(2, 3))
            out["embedding"] = (embedding[:, None], torch.ones(batch, 1, dtype=torch.bool, device=fmap.device))
        unknown = set(layers) - set(out)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)} for efficientat_mn04; "
                             "available: features, embedding")
        return out


def _fetched_labels(local: Path) -> Path | None:
    """The AudioSet label names fetched with the weights; None (with a
    warning) when they cannot be: embeddings do not need them, only tag()."""
    try:
        return local_or_fetched(local, "efficientat_mn04_labels", "AudioSet label names", CHECKPOINT_SOURCE)
    except CheckpointError as err:
        warnings.warn(f"{str(err).rstrip('.')}; until then tag() calls the classes class_0..class_{CLASSES_NUM - 1}.", stacklevel=3)
        return None


def read_labels(path: Path) -> list[str]:
    """AudioSet display names in index order from `class_labels_indices.csv`."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: int(row["index"]))
    names = [row["display_name"] for row in rows]
    if len(names) != CLASSES_NUM:
        raise CheckpointError(f"{path} lists {len(names)} classes, expected {CLASSES_NUM}")
    return names

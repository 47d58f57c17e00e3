"""`panns_cnn14`: PANNs Cnn14 (Kong et al. 2020), the AudioSet tagger at 32 kHz.

Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64,
fmin=50, fmax=14000, classes_num=527) in eval mode, with module names equal to
the keys of the official checkpoint `Cnn14_mAP=0.431.pth`, so it loads
strictly. The log-mel front end is rebuilt here (torch.stft + librosa's mel
filterbank): the checkpoint's fixed front-end tensors (STFT conv kernels and
`melW`) are derived, not learned, so their stored values are ignored.

Input length: the whole clip, as EVAR and HEAR feed CNN14 (EVAR
`evar/ar_cnn14.py`: `encode_frames` + `temporal_pooling` on each clip of the
task's full `unit_sec`; HEAR 2021 `cvssp-panns` `panns_hear.get_scene_embeddings`:
`model(x)['embedding']` on the whole clip, zero-padded to at least 1 s). The
network is fully convolutional with a global pool, so no window length is
native to it; clips longer than `WHOLE_CLIP_SECONDS` (120 s) are cut into
windows of that length only to bound memory (option `window_seconds=S`;
`window_seconds=10` gives the 10 s windows of earlier versions).

Layers:
  embedding    [B, 1, 2048]   the model's clip embedding (ReLU(fc1)), default
  conv_block6  [B, N, 2048]   frames after conv_block6, averaged over
                              frequency, one per 32 STFT hops (0.32 s)
`tag()` gives the 527 AudioSet class probabilities (`clipwise_output`).
"""
from __future__ import annotations

from pathlib import Path

import librosa
import torch
import torch.nn.functional as F
from torch import nn

from ..options import positive_float
from .base import WHOLE_CLIP_SECONDS, Encoder, Layer, seconds_option
from .checkpoints import load_strict, local_or_fetched, read_state_dict, require_file

CHECKPOINT_NAME = "Cnn14_mAP=0.431.pth"
CHECKPOINT_SOURCE = "Zenodo record 3987831 of PANNs, https://zenodo.org/record/3987831"
# Fixed front-end tensors stored in the official checkpoint; rebuilt here.
COMPUTED_KEYS = ("spectrogram_extractor.stft.conv_real.weight",
                 "spectrogram_extractor.stft.conv_imag.weight",
                 "logmel_extractor.melW")

SAMPLE_RATE = 32000
WINDOW_SIZE = 1024  # n_fft and window length
HOP_SIZE = 320  # 10 ms
MEL_BINS = 64
FMIN, FMAX = 50, 14000
CLASSES_NUM = 527
TIME_DOWNSAMPLING = 32  # five 2x2 average pools before conv_block6


class ConvBlock(nn.Module):
    """Two 3x3 conv -> BatchNorm -> ReLU, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """Cnn14 at inference: no SpecAugment, no mixup, dropout off."""

    def __init__(self):
        super().__init__()
        # Front end, as torchlibrosa computes it: periodic hann window (scipy's
        # fftbins=True), Slaney mel filterbank. Non-persistent buffers: they
        # are not part of the state dict we load.
        self.register_buffer("window", torch.hann_window(WINDOW_SIZE, periodic=True), persistent=False)
        melW = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=WINDOW_SIZE, n_mels=MEL_BINS,
                                   fmin=FMIN, fmax=FMAX).T  # [513, 64]
        self.register_buffer("melW", torch.from_numpy(melW).float(), persistent=False)

        # bn0 normalises each mel bin (applied with mel bins as channels).
        self.bn0 = nn.BatchNorm2d(MEL_BINS)
        self.conv_block1 = ConvBlock(1, 64)
        self.conv_block2 = ConvBlock(64, 128)
        self.conv_block3 = ConvBlock(128, 256)
        self.conv_block4 = ConvBlock(256, 512)
        self.conv_block5 = ConvBlock(512, 1024)
        self.conv_block6 = ConvBlock(1024, 2048)
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, CLASSES_NUM)

    def logmel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, 1, frames, 64]: centred STFT with reflect padding,
        power spectrum, mel projection, 10*log10 with floor 1e-10 (ref 1.0,
        no top_db clipping)."""
        spec = torch.stft(waveforms, n_fft=WINDOW_SIZE, hop_length=HOP_SIZE, win_length=WINDOW_SIZE,
                          window=self.window, center=True, pad_mode="reflect", return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # [B, 513, frames]
        mel = torch.matmul(power.transpose(1, 2), self.melW)  # [B, frames, 64]
        return (10.0 * torch.log10(torch.clamp(mel, min=1e-10)))[:, None]

    def conv_frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, 2048, frames / 32]: conv_block6 output averaged over
        frequency, the time series the clip embedding pools."""
        x = self.logmel(waveforms)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        x = self.conv_block1(x, pool_size=(2, 2))
        x = self.conv_block2(x, pool_size=(2, 2))
        x = self.conv_block3(x, pool_size=(2, 2))
        x = self.conv_block4(x, pool_size=(2, 2))
        x = self.conv_block5(x, pool_size=(2, 2))
        x = self.conv_block6(x, pool_size=(1, 1))
        return x.mean(dim=3)

    def head(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Max + mean over time, fc1 + ReLU -> embedding; fc_audioset + sigmoid
        -> clipwise_output."""
        x = frames.max(dim=2).values + frames.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return {"embedding": embedding, "clipwise_output": torch.sigmoid(self.fc_audioset(embedding))}

    def forward(self, waveforms: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.conv_frames(waveforms))


class Cnn14Encoder(Encoder):
    sample_rate = SAMPLE_RATE
    window_seconds = WHOLE_CLIP_SECONDS  # whole clips (see the module docstring)
    # Five 2x pools in time need >= 32 STFT frames (1 + T // 320 >= 32);
    # 0.32 s gives 33.
    min_seconds = 0.32
    padding_invariant = False  # global max/mean pooling over time sees padding
    options = {"checkpoint": str, "window_seconds": positive_float}

    def __init__(self, checkpoint: Path | None = None, window_seconds: float = WHOLE_CLIP_SECONDS):
        super().__init__()
        self.window_seconds = window_seconds
        self.cnn14 = Cnn14()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        if self.checkpoint is not None:
            state = read_state_dict(self.checkpoint)
            state = {k: v for k, v in state.items() if k not in COMPUTED_KEYS}
            load_strict(self.cnn14, state, self.checkpoint)
        self.layers = [Layer("conv_block6", 2048), Layer("embedding", 2048)]
        self.default_layer = "embedding"

    @classmethod
    def from_options(cls, pretrained_dir: Path, checkpoint: str | None = None,
                     window_seconds: str | float = WHOLE_CLIP_SECONDS, **options) -> "Cnn14Encoder":
        window = seconds_option(window_seconds, "window_seconds")
        if checkpoint:
            return cls(require_file(Path(checkpoint), "PANNs Cnn14 checkpoint", CHECKPOINT_SOURCE), window)
        return cls(local_or_fetched(Path(pretrained_dir) / "panns" / CHECKPOINT_NAME, "panns_cnn14",
                                    "PANNs Cnn14 checkpoint", CHECKPOINT_SOURCE), window)

    def config(self) -> dict:
        # the window decides the embeddings of long clips: stores made with
        # another one (10 s windows before whole clips) are never mixed
        window = {"window_seconds": self.window_seconds}
        if self.checkpoint is None:
            return {"checkpoint": None, **window}
        return {"checkpoint": self.checkpoint.name, "checkpoint_bytes": self.checkpoint.stat().st_size, **window}

    @torch.no_grad()
    def tag(self, waveforms: torch.Tensor) -> torch.Tensor:
        """AudioSet class probabilities `clipwise_output` [B, 527]."""
        return self.cnn14(waveforms)["clipwise_output"]

    def forward(self, waveforms, lengths, layers):
        frames = self.cnn14.conv_frames(waveforms)  # [B, 2048, N]
        batch, _, num = frames.shape
        out = {}
        if "conv_block6" in layers:
            # Frame n starts at STFT frame 32 n, i.e. sample 32 n * hop.
            starts = torch.arange(num, device=lengths.device) * (TIME_DOWNSAMPLING * HOP_SIZE)
            mask = starts[None, :] < lengths[:, None]
            mask[:, 0] = True
            out["conv_block6"] = (frames.transpose(1, 2), mask)
        if "embedding" in layers:
            embedding = self.cnn14.head(frames)["embedding"]
            out["embedding"] = (embedding[:, None], torch.ones(batch, 1, dtype=torch.bool, device=frames.device))
        unknown = set(layers) - set(out)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)} for panns_cnn14; available: conv_block6, embedding")
        return out

"""`audiosep`: the encoder half of AudioSep's separation network.

AudioSep (Liu et al., 2023, "Separate Anything You Describe") separates the
sound described by a text query with `ResUNet30`: a magnitude-spectrogram
U-Net whose batch-normalised activations are shifted by FiLM betas computed
from a 512-d CLAP query embedding. This file re-implements
`ResUNet30(input_channels=1, output_channels=1, condition_size=512)` from the
upstream `models/resunet.py` (github.com/Audio-AGI/AudioSep), with module names
that match the official checkpoint keys (`ss_model.base.*`, `ss_model.film.*`),
so the checkpoint loads strictly.

Probing features are the pooled outputs of encoder blocks 1..6, averaged over
frequency: one frame per (2^k STFT hops), k = min(block, 5).

Differences from upstream, none of which change the numbers:
- the STFT/ISTFT are `torch.stft`/`torch.istft` instead of torchlibrosa's
  convolution kernels, so the checkpoint's kernel tensors are ignored;
- the CLAP query encoder (`query_encoder.*`) is not part of this module: the
  condition is a fixed embedding (see `AudioSepEncoder`); the separation
  method `common.separation.audiosep` adds it (`common.encoders.laion_clap`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.fetch import hub_cache_record
from .base import Encoder, Layer
from .checkpoints import CheckpointError, load_strict, local_or_fetched, read_state_dict, require_file

SAMPLE_RATE = 32000
N_FFT = 2048
HOP = 320
CONDITION_SIZE = 512
MOMENTUM = 0.01
# The U-Net halves time in encoder blocks 1..5, so the spectrogram is padded to
# a multiple of 2^5 frames before it and cropped back after the decoder.
TIME_DOWNSAMPLE = 2 ** 5

CHECKPOINT_DIR = "AudioSep"
CHECKPOINT_NAME = "audiosep_base_4M_steps.ckpt"  # official Lightning checkpoint
HF_CHECKPOINT_NAME = "pytorch_model.bin"  # Hugging Face copy: same keys, no wrapper
CHECKPOINT_SOURCE = ("https://huggingface.co/spaces/Audio-AGI/AudioSep (checkpoint/"
                     f"{CHECKPOINT_NAME}) or https://github.com/Audio-AGI/AudioSep")
# Fixed STFT/ISTFT kernels of torchlibrosa stored in the checkpoint; our front
# end computes them itself, so their values are never used.
FRONT_END_PREFIXES = ("ss_model.base.stft.", "ss_model.base.istft.")


# ---------------------------------------------------------------------------
# Building blocks (upstream names: ConvBlockRes, EncoderBlockRes1B,
# DecoderBlockRes1B). Tensors are (batch, channels, time, freq) throughout.
# ---------------------------------------------------------------------------

class ConvBlockRes(nn.Module):
    """Pre-activation residual block: (BN + FiLM beta -> leaky ReLU -> 3x3 conv) x 2,
    plus a 1x1 shortcut when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=MOMENTUM)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=MOMENTUM)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def film_sizes(self) -> dict[str, int]:
        return {"beta1": self.bn1.num_features, "beta2": self.bn2.num_features}

    def forward(self, x: torch.Tensor, film: dict) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.bn1(x) + film["beta1"], negative_slope=0.01))
        h = self.conv2(F.leaky_relu(self.bn2(h) + film["beta2"], negative_slope=0.01))
        return (self.shortcut(x) if self.shortcut is not None else x) + h


class EncoderBlock(nn.Module):
    """One residual block, then average pooling by `downsample` (time, freq).
    Returns (pooled, unpooled); the unpooled map is the U-Net skip connection."""

    def __init__(self, in_channels: int, out_channels: int, downsample: tuple[int, int]):
        super().__init__()
        self.conv_block1 = ConvBlockRes(in_channels, out_channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, film: dict) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.conv_block1(x, film["conv_block1"])
        return F.avg_pool2d(encoded, kernel_size=self.downsample), encoded


class DecoderBlock(nn.Module):
    """BN + FiLM -> leaky ReLU -> transposed conv (upsampling by `upsample`),
    concatenation with the skip connection, then one residual block."""

    def __init__(self, in_channels: int, out_channels: int, upsample: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=upsample, stride=upsample, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=MOMENTUM)
        self.conv_block2 = ConvBlockRes(out_channels * 2, out_channels)
        # Unused in the forward pass, but present (with its FiLM layer) in the
        # official model and checkpoint.
        self.bn2 = nn.BatchNorm2d(in_channels, momentum=MOMENTUM)

    def film_sizes(self) -> dict[str, int]:
        return {"beta1": self.bn1.num_features, "beta2": self.bn2.num_features}

    def forward(self, x: torch.Tensor, skip: torch.Tensor, film: dict) -> torch.Tensor:
        x = self.conv1(F.leaky_relu(self.bn1(x) + film["beta1"], negative_slope=0.01))
        return self.conv_block2(torch.cat((x, skip), dim=1), film["conv_block2"])


# ---------------------------------------------------------------------------
# The U-Net (upstream ResUNet30_Base) and its FiLM conditioner.
# ---------------------------------------------------------------------------

ENCODER_CHANNELS = [(32, 32), (32, 64), (64, 128), (128, 256), (256, 384), (384, 384)]
# Block 6 halves frequency only: time is already divided by 2^5.
ENCODER_DOWNSAMPLE = [(2, 2)] * 5 + [(1, 2)]
DECODER_CHANNELS = [(384, 384), (384, 384), (384, 256), (256, 128), (128, 64), (64, 32)]
DECODER_UPSAMPLE = [(1, 2)] + [(2, 2)] * 5


class ResUNet30Base(nn.Module):
    def __init__(self, input_channels: int = 1, output_channels: int = 1):
        super().__init__()
        self.output_channels = output_channels
        # Per output channel: magnitude mask, real and imaginary phase rotation.
        self.K = 3
        self.bn0 = nn.BatchNorm2d(N_FFT // 2 + 1, momentum=MOMENTUM)  # normalises each frequency bin
        self.pre_conv = nn.Conv2d(input_channels, 32, kernel_size=1)
        for i, ((c_in, c_out), down) in enumerate(zip(ENCODER_CHANNELS, ENCODER_DOWNSAMPLE), start=1):
            self.add_module(f"encoder_block{i}", EncoderBlock(c_in, c_out, down))
        self.conv_block7a = EncoderBlock(384, 384, (1, 1))  # bottleneck, no pooling
        for i, ((c_in, c_out), up) in enumerate(zip(DECODER_CHANNELS, DECODER_UPSAMPLE), start=1):
            self.add_module(f"decoder_block{i}", DecoderBlock(c_in, c_out, up))
        self.after_conv = nn.Conv2d(32, output_channels * self.K, kernel_size=1)
        # Periodic Hann window, as librosa's get_window(fftbins=True) used upstream.
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def spectrogram(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """waveforms [B, T] -> magnitude, cos and sin of the phase, each [B, 1, frames, N_FFT/2+1]."""
        spec = torch.stft(waveforms, N_FFT, HOP, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        real, imag = spec.real.transpose(1, 2)[:, None], spec.imag.transpose(1, 2)[:, None]
        mag = torch.clamp(real ** 2 + imag ** 2, min=1e-10) ** 0.5  # eps keeps cos/sin finite in silence
        return mag, real / mag, imag / mag

    def prepare(self, mag: torch.Tensor) -> torch.Tensor:
        """Magnitude -> U-Net input: per-bin BatchNorm, time padded with zeros
        to a multiple of 32 frames, last bin dropped (1025 -> 1024 so that
        frequency halves evenly six times), 1x1 conv to 32 channels."""
        x = self.bn0(mag.transpose(1, 3)).transpose(1, 3)
        pad = -x.shape[2] % TIME_DOWNSAMPLE
        x = F.pad(x, (0, 0, 0, pad))
        return self.pre_conv(x[..., :-1])

    def encode(self, x: torch.Tensor, film: dict, depth: int = 6) -> tuple[list, list]:
        """Run encoder blocks 1..depth; return their pooled outputs and the skips."""
        pooled, skips = [], []
        for i in range(1, depth + 1):
            x, skip = getattr(self, f"encoder_block{i}")(x, film[f"encoder_block{i}"])
            pooled.append(x)
            skips.append(skip)
        return pooled, skips

    def forward(self, waveforms: torch.Tensor, film: dict) -> torch.Tensor:
        """Separated waveform [B, output_channels, T] for mono `waveforms` [B, T]."""
        mag, cos_in, sin_in = self.spectrogram(waveforms)
        pooled, skips = self.encode(self.prepare(mag), film)
        x, _ = self.conv_block7a(pooled[-1], film["conv_block7a"])
        for i, skip in enumerate(reversed(skips), start=1):
            x = getattr(self, f"decoder_block{i}")(x, skip, film[f"decoder_block{i}"])
        x = self.after_conv(x)
        # Restore the dropped frequency bin (as zeros) and the unpadded length.
        x = F.pad(x, (0, 1))[:, :, : mag.shape[2]]
        return self.masks_to_waveform(x, mag, cos_in, sin_in, waveforms.shape[-1])

    def masks_to_waveform(self, x, mag, cos_in, sin_in, length: int) -> torch.Tensor:
        """Apply the estimated complex mask to the mixture STFT and invert it.
        x: [B, output_channels * K, frames, bins]; mag/cos_in/sin_in: [B, 1, frames, bins]."""
        batch, _, frames, bins = x.shape
        x = x.reshape(batch, self.output_channels, self.K, frames, bins)
        mask_mag = torch.sigmoid(x[:, :, 0])
        mask_real, mask_imag = torch.tanh(x[:, :, 1]), torch.tanh(x[:, :, 2])
        # Only the direction of (mask_real, mask_imag) is used: a phase rotation.
        norm = torch.clamp((mask_real ** 2 + mask_imag ** 2) ** 0.5, min=1e-10)
        mask_cos, mask_sin = mask_real / norm, mask_imag / norm
        # angle(Y) = angle(X) + angle(M), by the angle-sum identities.
        out_cos = cos_in * mask_cos - sin_in * mask_sin
        out_sin = sin_in * mask_cos + cos_in * mask_sin
        out_mag = F.relu(mag * mask_mag)
        spec = torch.complex(out_mag * out_cos, out_mag * out_sin)  # [B, C, frames, bins]
        spec = spec.reshape(batch * self.output_channels, frames, bins).transpose(1, 2)
        wav = torch.istft(spec, N_FFT, HOP, window=self.window, center=True, length=length)
        return wav.reshape(batch, self.output_channels, length)


class FiLM(nn.ModuleDict):
    """One Linear(condition -> channels) per BatchNorm that takes a FiLM beta.

    Upstream names each layer by its path in the U-Net joined with '->'
    (e.g. `encoder_block1->conv_block1->beta1`). A ModuleDict accepts such
    names (only '.' is forbidden), so the state-dict keys are the checkpoint's."""

    def __init__(self, base: ResUNet30Base, condition_size: int = CONDITION_SIZE):
        super().__init__()
        for path, module in base.named_modules():
            if hasattr(module, "film_sizes"):
                for beta, size in module.film_sizes().items():
                    self[f"{path.replace('.', '->')}->{beta}"] = nn.Linear(condition_size, size)

    def forward(self, condition: torch.Tensor) -> dict:
        """condition [B, condition_size] -> nested dict mirroring the U-Net
        ({'encoder_block1': {'conv_block1': {'beta1': [B, C, 1, 1], ...}}, ...})."""
        film: dict = {}
        for name, linear in self.items():
            *parents, beta = name.split("->")
            node = film
            for part in parents:
                node = node.setdefault(part, {})
            node[beta] = linear(condition)[:, :, None, None]
        return film


class ResUNet30(nn.Module):
    def __init__(self, input_channels: int = 1, output_channels: int = 1, condition_size: int = CONDITION_SIZE):
        super().__init__()
        self.base = ResUNet30Base(input_channels, output_channels)
        self.film = FiLM(self.base, condition_size)

    def forward(self, waveforms: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.base(waveforms, self.film(condition))


# ---------------------------------------------------------------------------
# The probing encoder.
# ---------------------------------------------------------------------------

class AudioSepEncoder(Encoder):
    """Frames of AudioSep's ResUNet30 encoder blocks 1..6 (pooled output,
    averaged over frequency), 32 kHz.

    The FiLM condition is a fixed 512-d query: by default all zeros, so that
    each FiLM layer contributes only its bias (a query-independent, "no
    description" condition). Option `query=PATH` loads one 512-d embedding from
    a .npy file (e.g. a CLAP text embedding) applied to every item.

    Options: `checkpoint=PATH` (default `pretrained_dir/AudioSep/
    audiosep_base_4M_steps.ckpt`, else `pretrained_dir/AudioSep/pytorch_model.bin`),
    `query=PATH`.
    """

    sample_rate = SAMPLE_RATE
    window_seconds = 5.0  # AudioSep was trained on 5-s segments (config segment_seconds: 5)
    min_seconds = N_FFT / SAMPLE_RATE  # reflect padding of the STFT needs > N_FFT/2 samples
    # Not invariant: padded zeros pass bn0 (which maps them to non-zero
    # values) and 3x3 convolutions, so the last valid frames of an item
    # change with the amount of padding after it.
    padding_invariant = False
    options = {"checkpoint": str, "query": str}

    def __init__(self, checkpoint: Path | None = None, query: Path | None = None):
        super().__init__()
        self.checkpoint, self.query_path = checkpoint, query
        self.ss_model = ResUNet30(input_channels=1, output_channels=1, condition_size=CONDITION_SIZE)
        self.layers = [Layer(f"block{i}", c_out) for i, (_, c_out) in enumerate(ENCODER_CHANNELS, start=1)]
        self.default_layer = "block6"
        self.register_buffer("query", self._read_query(query), persistent=False)
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)

    @staticmethod
    def _read_query(query: Path | None) -> torch.Tensor:
        if query is None:
            return torch.zeros(CONDITION_SIZE)
        if not Path(query).is_file():
            raise FileNotFoundError(f"AudioSep query embedding not found: {query} "
                                    f"(expected a .npy file holding one {CONDITION_SIZE}-d vector)")
        array = np.asarray(np.load(query), dtype=np.float32)
        if array.size != CONDITION_SIZE:  # accept [512] or [1, 512]
            raise ValueError(f"{query}: expected one {CONDITION_SIZE}-d embedding, got shape {array.shape}")
        return torch.from_numpy(array.reshape(CONDITION_SIZE).copy())

    def load_checkpoint(self, path: Path, state: dict[str, torch.Tensor] | None = None) -> None:
        """Load the `ss_model.*` tensors of the checkpoint at `path` (or of
        `state`, its tensors already read)."""
        state = read_state_dict(path) if state is None else state
        # query_encoder.* is the CLAP model (not used: the condition is fixed);
        # the front-end kernels are recomputed by torch.stft/istft.
        state = {k: v for k, v in state.items()
                 if not k.startswith("query_encoder.") and not k.startswith(FRONT_END_PREFIXES)}
        if not any(k.startswith("ss_model.") for k in state):
            raise CheckpointError(f"{path} has no 'ss_model.*' keys: it is not an AudioSep checkpoint")
        load_strict(self, state, path)

    @classmethod
    def from_options(cls, pretrained_dir: Path, checkpoint: str | None = None, query: str | None = None,
                     **options) -> "AudioSepEncoder":
        return cls(checkpoint=cls.locate_checkpoint(pretrained_dir, checkpoint), query=Path(query) if query else None)

    @staticmethod
    def locate_checkpoint(pretrained_dir: Path, checkpoint: str | Path | None = None) -> Path:
        """`checkpoint` if given, else the official or HF file in
        `pretrained_dir/AudioSep/` (or its fetched copy, see `local_or_fetched`);
        CheckpointError naming it when missing."""
        if checkpoint:
            return require_file(Path(checkpoint), "AudioSep checkpoint", CHECKPOINT_SOURCE)
        folder = Path(pretrained_dir) / CHECKPOINT_DIR
        path = folder / CHECKPOINT_NAME
        if not path.exists() and (folder / HF_CHECKPOINT_NAME).exists():
            path = folder / HF_CHECKPOINT_NAME
        return local_or_fetched(path, "audiosep",
                                f"AudioSep checkpoint ({CHECKPOINT_NAME} or {HF_CHECKPOINT_NAME} in {folder})",
                                CHECKPOINT_SOURCE)

    def config(self) -> dict:
        ckpt = self.checkpoint
        fetched = hub_cache_record(ckpt) if ckpt else {}  # from the Hugging Face cache: which commit, which file
        return {"checkpoint": ckpt.name if ckpt else None,
                "checkpoint_bytes": ckpt.stat().st_size if ckpt else None,
                **{f"checkpoint_{key}": value for key, value in fetched.items()},
                # The embedding's hash, not its path, decides whether stores match.
                "query": self.query_path.name if self.query_path else "zeros",
                "query_sha1": None if self.query_path is None else
                hashlib.sha1(self.query.cpu().numpy().tobytes()).hexdigest()}

    def _condition(self, batch: int, condition: torch.Tensor | None) -> torch.Tensor:
        if condition is None:
            condition = self.query
        condition = condition.to(self.query.device, self.query.dtype)
        return condition.expand(batch, -1) if condition.ndim == 1 else condition

    def forward(self, waveforms, lengths, layers, condition: torch.Tensor | None = None):
        names = [layer.name for layer in self.layers]
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(f"unknown layers {unknown} for audiosep; available: {', '.join(names)}")
        depth = max(names.index(name) for name in layers) + 1
        base = self.ss_model.base
        film = self.ss_model.film(self._condition(len(waveforms), condition))
        mag, _, _ = base.spectrogram(waveforms)
        pooled, _ = base.encode(base.prepare(mag), film, depth)
        out = {}
        for name in layers:
            block = names.index(name) + 1
            feats = pooled[block - 1].mean(dim=3).transpose(1, 2)  # [B, frames, C]
            # Frame n of block k starts at STFT frame n * 2^min(k, 5), i.e. at
            # that many hops; it is valid when it starts inside the item.
            starts = torch.arange(feats.shape[1], device=lengths.device) * (2 ** min(block, 5) * HOP)
            mask = starts[None, :] < lengths[:, None]
            mask[:, 0] = True
            out[name] = (feats, mask)
        return out

    @torch.no_grad()
    def separate(self, waveforms: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """AudioSep's separation output [B, T] for mixtures `waveforms` [B, T]
        and query embeddings `condition` [B, 512] or [512] (default: the
        encoder's query)."""
        return self.ss_model(waveforms, self._condition(len(waveforms), condition))[:, 0]


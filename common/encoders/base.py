"""The contract every encoder meets, and the checks that enforce it.

An encoder is a frozen `torch.nn.Module` that maps a padded batch of mono
waveforms at its own `sample_rate` to frame-level features for one or more
named layers. Pooling, windowing of long inputs, batching, devices and
storage are done once, in `common.extraction.extract`; an encoder only computes frames.

    frames = encoder(waveforms [B, T], lengths [B], layers=["block6"])
    frames["block6"] == (features [B, N, D], mask [B, N] bool)

`mask[b, n]` is True where frame n of item b comes from real samples (not
padding). Clip-level models (PANNs embedding, AST pooled output) return N=1.
`waveforms` is read-only: it may be a view of the decoded audio itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch

from ..options import OptionError, positive_float

Frames = tuple[torch.Tensor, torch.Tensor]  # features [B, N, D], valid mask [B, N]


#: Fully convolutional clip models (PANNs CNN14, EfficientAT) encode a clip
#: whole up to this length and cut longer audio into windows of it, only to
#: bound memory: CNN14 on 120 s peaks at about +0.6 GB (fp32, CPU; 60 s: +0.3
#: GB), EfficientAT mn04 at about a fifth of that. Option `window_seconds`.
WHOLE_CLIP_SECONDS = 120.0


#: an --encoder-option value the encoder cannot use (one error for every option check)
EncoderOptionError = OptionError


def seconds_option(value, option: str) -> float:
    """A positive, finite number of seconds from an --encoder-option value."""
    try:
        return positive_float(value)
    except OptionError:
        raise OptionError(f"--encoder-option {option}={value!r}: give a positive number of seconds") from None


@dataclass(frozen=True)
class Layer:
    name: str
    dim: int


class Encoder(torch.nn.Module):
    #: input sample rate in Hz
    sample_rate: ClassVar[int]
    #: native input length in seconds; longer audio is cut into windows of
    #: this length and pooled over all windows (None: any length works)
    window_seconds: ClassVar[float | None] = None
    #: shortest input in seconds the model accepts; shorter audio is
    #: zero-padded up to it before encoding
    min_seconds: ClassVar[float] = 0.0
    #: True when padding a batch never changes an item's valid frames (the
    #: model masks padding). False: batches only hold items of equal length.
    padding_invariant: ClassVar[bool] = False

    #: what `--encoder-option KEY=VALUE` accepts: KEY -> parser of VALUE (see
    #: common.options); `build_encoder` refuses other keys and values the
    #: parser rejects before `from_options` sees them
    options: ClassVar[dict[str, Callable[[str], Any]]] = {}

    #: layers in depth order; set by each encoder in __init__
    layers: list[Layer]
    default_layer: str

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor,
                layers: Sequence[str]) -> dict[str, Frames]:
        raise NotImplementedError

    @classmethod
    def parse_options(cls, options: dict) -> dict:
        """`options` (as typed by the user, or as stored with features) parsed
        with the declared parsers; one-line OptionError for an unknown key or
        a value that makes no sense."""
        accepted = ", ".join(f"{key}=..." for key in cls.options) or "no options"
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise OptionError(f"unknown option {', '.join(unknown)} for {cls.__name__}; it takes {accepted}")
        parsed = {}
        for key, value in options.items():
            try:
                parsed[key] = cls.options[key](value) if value is not None else None
            except OptionError as err:
                raise OptionError(f"encoder option {key}={value}: {err}") from None
        return parsed

    def config(self) -> dict:
        """JSON-serialisable settings that determine the embeddings (checkpoint
        file and size, options). Stored with the features; a store made with
        another config is never mixed with this one."""
        return {}

    def layer_dims(self) -> dict[str, int]:
        return {layer.name: layer.dim for layer in self.layers}

    def resolve_layers(self, spec: str | Sequence[str] | None) -> list[str]:
        """`None`/"default" -> the default layer; "all" -> every layer; a name,
        an index into `layers`, or a comma-separated list of those."""
        names = [layer.name for layer in self.layers]
        if spec is None or spec == "default":
            return [self.default_layer]
        if spec == "all":
            return names
        parts = spec.split(",") if isinstance(spec, str) else list(spec)
        chosen = []
        for part in parts:
            part = str(part).strip()
            if part in names:
                chosen.append(part)
            elif part.lstrip("-").isdigit() and -len(names) <= int(part) < len(names):
                chosen.append(names[int(part)])
            else:
                raise ValueError(f"unknown layer {part!r} for {type(self).__name__}; "
                                 f"available: {', '.join(names)} (or 'all')")
        return chosen


def frame_mask(lengths: torch.Tensor, total_samples: int, num_frames: int) -> torch.Tensor:
    """Valid-frame mask for frames that evenly cover `total_samples`: frame n
    of item b is valid when it starts inside the item's real samples."""
    hop = total_samples / max(num_frames, 1)
    starts = torch.arange(num_frames, device=lengths.device) * hop
    mask = starts[None, :] < lengths[:, None].to(starts.dtype)
    mask[:, 0] = True  # every item keeps at least one frame
    return mask


def check_encoder(encoder: Encoder, seconds: float = 1.5) -> None:
    """Run the encoder contract on a tiny batch of two items of different
    length; raise AssertionError naming what is wrong. Used by tests for every
    registered encoder and available to authors of new ones."""
    name = type(encoder).__name__
    assert isinstance(encoder.sample_rate, int) and encoder.sample_rate > 0, f"{name}: sample_rate"
    assert encoder.layers, f"{name}: no layers"
    names = [layer.name for layer in encoder.layers]
    assert encoder.default_layer in names, f"{name}: default_layer {encoder.default_layer!r} not in layers"
    n = int(seconds * encoder.sample_rate)
    waveforms = torch.randn(2, n) * 0.1
    lengths = torch.tensor([n, n // 2])
    waveforms[1, n // 2:] = 0
    device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    given = waveforms.to(device)
    with torch.inference_mode():
        out = encoder(given, lengths.to(device), names)
    # extraction may pass views of the decoded audio itself: inputs are read-only
    assert torch.equal(given.cpu(), waveforms), f"{name}: forward changed its input waveforms in place"
    assert set(out) == set(names), f"{name}: returned layers {sorted(out)} != requested {names}"
    for layer in encoder.layers:
        feats, mask = out[layer.name]
        assert feats.ndim == 3 and feats.shape[0] == 2, f"{name}/{layer.name}: features {tuple(feats.shape)} not [B, N, D]"
        assert feats.shape[2] == layer.dim, f"{name}/{layer.name}: dim {feats.shape[2]} != declared {layer.dim}"
        assert mask.shape == feats.shape[:2] and mask.dtype == torch.bool, f"{name}/{layer.name}: mask {tuple(mask.shape)}"
        assert bool(mask[:, 0].all()), f"{name}/{layer.name}: an item has no valid frame"
        assert torch.isfinite(feats[mask]).all(), f"{name}/{layer.name}: non-finite features"
    assert isinstance(encoder.config(), dict), f"{name}: config() must return a dict"

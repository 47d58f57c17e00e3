"""Pooling's promise, "padding excluded", for every registered encoder and
every layer: one clip pooled alone equals the same clip padded two ways (in
a batch with a longer clip; with extra zeros after it and after a shorter
clip). Encoders whose outputs change with padding (`padding_invariant`
False) are shown to get equal-length forward passes only, which is how the
extraction path keeps the promise for them. Models are randomly initialised:
the real architectures (tiny configs for the transformers ones), short clips."""
from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
import torch
from test_transformers_encoders import MAKERS

from common.encoders import ENCODERS, build_encoder
from common.extraction.extract import embed_batch
from common.extraction.pooling import pool


def _built(name, tmp_path):
    return build_encoder(name, pretrained_dir=tmp_path)


def _random(module: str, cls: str):
    def build(tmp_path):
        encoder = getattr(importlib.import_module(module), cls)()  # no checkpoint: random weights
        return encoder.eval().requires_grad_(False)
    return build


def _optional(package: str, name: str):
    def build(tmp_path):
        if importlib.util.find_spec(package) is None:  # found, not imported (resemblyzer's import is broken)
            pytest.skip(f"optional package {package} is not installed")
        return _built(name, tmp_path)
    return build


def _transformers(name: str):
    def build(tmp_path):
        MAKERS[name](tmp_path)
        return _built(name, tmp_path)
    return build


BUILDERS = {
    "mfcc": lambda tmp_path: _built("mfcc", tmp_path),
    "audiosep": _random("common.encoders.audiosep", "AudioSepEncoder"),
    "panns_cnn14": _random("common.encoders.panns", "Cnn14Encoder"),
    "efficientat_mn04": _random("common.encoders.efficientat", "EfficientATEncoder"),
    "crepe": _optional("torchcrepe", "crepe"),
    "resemblyzer": _optional("resemblyzer", "resemblyzer"),
    **{name: _transformers(name) for name in MAKERS},
}


def test_every_registered_encoder_is_covered():
    assert sorted(BUILDERS) == sorted(ENCODERS), "add a builder for the new encoder to BUILDERS"


def _pooled_forward(encoder, waveforms: torch.Tensor, lengths: list[int], row: int) -> dict[str, torch.Tensor]:
    """Mean-pooled frames of one row of a padded batch, for every layer."""
    names = [layer.name for layer in encoder.layers]
    with torch.inference_mode():
        out = encoder(waveforms, torch.tensor(lengths), names)
    return {name: pool(feats[row:row + 1].float(), mask[row:row + 1])[0] for name, (feats, mask) in out.items()}


def _assert_same(got: dict, ref: dict, name: str, how: str) -> None:
    for layer, value in ref.items():
        scale = float(value.abs().max()) + 1e-3
        torch.testing.assert_close(got[layer], value, rtol=1e-4, atol=1e-4 * scale,
                                   msg=lambda m: f"{name}/{layer}, {how}: {m}")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_padding_never_changes_a_pooled_embedding(name, tmp_path):
    torch.manual_seed(0)
    encoder = BUILDERS[name](tmp_path)
    sr = encoder.sample_rate
    # short (a fast test), above the encoder's minimum input, below its window
    n_short, n_clip, n_long = (int((encoder.min_seconds + s) * sr) for s in (0.06, 0.15, 0.3))
    n_extra = int(0.05 * sr)
    rng = np.random.default_rng(0)
    short, clip, long = ((0.2 * rng.standard_normal(n)).astype(np.float32) for n in (n_short, n_clip, n_long))
    names = [layer.name for layer in encoder.layers]

    # the extraction path: alone, and among shorter and longer clips
    alone = embed_batch(encoder, [clip], names, "mean", torch.device("cpu"))
    calls: list[tuple[int, list[int]]] = []
    forward = encoder.forward

    def spy(waveforms, lengths, layers):
        calls.append((waveforms.shape[1], lengths.tolist()))
        return forward(waveforms, lengths, layers)

    encoder.forward = spy
    try:
        mixed = embed_batch(encoder, [short, clip, long], names, "mean", torch.device("cpu"))
    finally:
        del encoder.forward
    _assert_same({k: torch.from_numpy(v[1]) for k, v in mixed.items()},
                 {k: torch.from_numpy(v[0]) for k, v in alone.items()}, name, "extraction among other lengths")

    if not encoder.padding_invariant:
        # the promise is kept by never padding: every pass holds one length
        assert calls and all(set(lengths) == {width} for width, lengths in calls), \
            f"{name} is not padding-invariant but a forward pass mixed lengths: {calls}"
        return

    # padding-invariant encoders are padded for real: above, the clip shared a
    # pass with the longer clip; here zeros run past both items of a batch
    assert [lengths for _, lengths in calls] == [[n_short, n_clip, n_long]], \
        f"{name}: extraction did not pad the three clips into one pass: {calls}"
    batch = torch.zeros(2, n_clip + n_extra)
    batch[0, :n_short], batch[1, :n_clip] = torch.from_numpy(short), torch.from_numpy(clip)
    _assert_same(_pooled_forward(encoder, batch, [n_short, n_clip], 1),
                 {k: torch.from_numpy(v[0]) for k, v in alone.items()}, name, "extra zeros after the batch")

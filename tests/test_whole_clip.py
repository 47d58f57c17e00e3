"""Fully convolutional clip models (PANNs CNN14, EfficientAT) take each clip
whole, as EVAR and HEAR feed them, up to a memory cap recorded in their
config; stores made with another window are refused, never mixed."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from toy import make_toy_task

import common.extraction.extract as ex
from common.encoders import encoder_class
from common.encoders.base import WHOLE_CLIP_SECONDS, EncoderOptionError
from common.encoders.efficientat import EfficientATEncoder
from common.errors import UserError
from common.extraction.store import StoreMismatchError


def forward_widths(encoder, audios) -> list[list[int]]:
    """The lengths of the rows of every forward pass embed_batch makes (the
    model itself is not run: only the windowing is under test)."""
    calls = []

    def spy(waveforms, lengths, layers):
        calls.append(lengths.tolist())
        dims = encoder.layer_dims()
        return {name: (torch.zeros(len(lengths), 1, dims[name]), torch.ones(len(lengths), 1, dtype=torch.bool))
                for name in layers}

    encoder.forward = spy
    try:
        ex.embed_batch(encoder, audios, [encoder.default_layer], "mean", torch.device("cpu"))
    finally:
        del encoder.forward
    return calls


@pytest.mark.parametrize("name", ["panns_cnn14", "efficientat_mn04"])
def test_clip_models_default_to_whole_clips_up_to_the_cap(name):
    cls = encoder_class(name)
    assert cls.window_seconds == WHOLE_CLIP_SECONDS >= 60  # HEAR/EVAR clips (GTZAN 30 s, ICBHI <= 86 s) stay whole
    # the cap is part of the config, which decides whether stores match
    assert cls.config(SimpleNamespace(checkpoint=None, fmax=1.0, window_seconds=7.0))["window_seconds"] == 7.0


def test_a_long_clip_is_one_forward_pass_and_the_cap_windows_longer_ones():
    torch.manual_seed(0)
    sr = EfficientATEncoder.sample_rate
    clip = (0.1 * np.random.default_rng(0).standard_normal(12 * sr)).astype(np.float32)  # > the old 10 s window
    assert forward_widths(EfficientATEncoder().eval(), [clip]) == [[12 * sr]]
    capped = EfficientATEncoder(window_seconds=5.0).eval()
    assert sorted(map(sorted, forward_widths(capped, [clip]))) == [[2 * sr], [5 * sr, 5 * sr]]
    assert EfficientATEncoder().config()["window_seconds"] == WHOLE_CLIP_SECONDS
    assert capped.config()["window_seconds"] == 5.0


@pytest.mark.parametrize("value", ["0", "-3", "ten", "inf"])
def test_a_bad_window_option_says_what_to_give(value, tmp_path):
    with pytest.raises(EncoderOptionError, match="window_seconds=.*positive number of seconds") as err:
        EfficientATEncoder.from_options(tmp_path, window_seconds=value)
    assert isinstance(err.value, UserError)


def test_a_store_made_with_other_windows_is_refused(tmp_path, monkeypatch):
    task = make_toy_task(tmp_path / "data", per_class=2, classes=2)
    torch.manual_seed(0)
    windowed = EfficientATEncoder(window_seconds=10.0).eval()  # what earlier versions did
    monkeypatch.setattr(ex, "build_encoder", lambda *a, **k: windowed)
    kw = dict(work_dir=tmp_path / "work", num_workers=0, progress=False)
    assert ex.extract_embeddings(task, "efficientat_mn04", tmp_path / "data", **kw).meta()["complete"]
    monkeypatch.setattr(ex, "build_encoder", lambda *a, **k: EfficientATEncoder().eval())
    with pytest.raises(StoreMismatchError, match="window_seconds"):
        ex.extract_embeddings(task, "efficientat_mn04", tmp_path / "data", **kw)


def test_a_store_pooled_with_windows_counted_alike_is_refused(tmp_path, monkeypatch):
    task = make_toy_task(tmp_path / "data", per_class=2, classes=2)
    torch.manual_seed(0)
    encoder = EfficientATEncoder(window_seconds=0.6).eval()  # the toy's 0.75 and 1 s clips have tail windows
    monkeypatch.setattr(ex, "build_encoder", lambda *a, **k: encoder)
    kw = dict(work_dir=tmp_path / "work", num_workers=0, progress=False)
    store = ex.extract_embeddings(task, "efficientat_mn04", tmp_path / "data", **kw)
    meta = store.meta()
    assert meta["settings"]["window_weights"] == "real samples"
    del meta["settings"]["window_weights"]  # what earlier versions wrote
    (store.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreMismatchError, match="window_weights"):
        ex.extract_embeddings(task, "efficientat_mn04", tmp_path / "data", **kw)

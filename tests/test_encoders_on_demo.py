"""Real extraction runs with model encoders on demo data: Speech Commands
clips of uneven length exercise equal-length batching for an encoder that is
not padding-invariant (HuBERT), ESC-50 clips at 44.1 kHz resampling and
Whisper's 30 s window."""
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from test_transformers_encoders import make_hubert, make_whisper

from common.extraction.extract import embed_batch, extract_embeddings
from common.task import load_task

pytestmark = pytest.mark.filterwarnings("ignore::common.data.PartialDownloadWarning")


def extract(name, demo_roots, tmp_path, pretrained_dir, folder="icbhi_feature_fc", data="icbhi", **kw):
    task = load_task(PROJECT_ROOT / folder)
    return extract_embeddings(task, name, demo_roots[data], work_dir=tmp_path, pretrained_dir=pretrained_dir,
                              num_workers=0, progress=False, **kw)


@pytest.mark.parametrize("maker,name,folder,data", [
    (make_hubert, "hubert", "key_word_spotting", "speech_commands"),
    (make_whisper, "whisper", "esc50_feature_fc", "esc50")])
def test_transformers_encoders_extract_every_layer(maker, name, folder, data, demo_roots, tmp_path):
    maker(tmp_path / "models")
    store = extract(name, demo_roots, tmp_path, tmp_path / "models", folder=folder, data=data, layer="all")
    meta = store.meta()
    assert meta["complete"] and meta["num_failed"] == 0
    layers = list(meta["settings"]["layers"])
    features = store.load(layers)
    assert len(layers) >= 3 and all(np.isfinite(features.embeddings[l]).all() for l in layers)
    assert len(features.items) == meta["num_items"]


def test_efficientat_real_weights_on_demo_esc50(demo_roots, tmp_path, shared_dir):
    weights = shared_dir / "pretrained" / "efficientat_mn04" / "mn04_as_mAP_432.pt"
    store = extract("efficientat_mn04", demo_roots, tmp_path, tmp_path, folder="esc50_feature_fc",
                    data="esc50", encoder_options={"checkpoint": str(weights)})
    features = store.load()
    assert features.embeddings["embedding"].shape == (store.meta()["num_items"], 384)


def test_long_item_pools_over_windows_like_its_pieces(tmp_path):
    make_whisper(tmp_path)
    from common.encoders import build_encoder
    encoder = build_encoder("whisper", tmp_path)
    sr = encoder.sample_rate
    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(int(65 * sr))).astype(np.float32)  # 30 + 30 + 5 s windows
    whole = embed_batch(encoder, [long], ["layer1"], "mean+std", device=encoder_device(encoder))["layer1"]
    pieces = [long[:30 * sr], long[30 * sr:60 * sr], long[60 * sr:]]
    parts = embed_batch(encoder, pieces, ["layer1"], "mean", device=encoder_device(encoder))["layer1"]
    # mean over all frames = frame-count-weighted mean of the windows' means (50 frames/s)
    counts = np.array([1500, 1500, 250])[:, None]
    np.testing.assert_allclose(whole[0, : parts.shape[1]], (parts * counts).sum(0) / counts.sum(), rtol=1e-4,
                               atol=1e-5)


def encoder_device(encoder):
    import torch
    return next(encoder.parameters()).device if any(True for _ in encoder.parameters()) else torch.device("cpu")

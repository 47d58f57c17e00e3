"""The transformers encoders on tiny randomly initialised models of the real
architectures, saved the way the hub checkpoints are laid out (offline)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from common.encoders import build_encoder, check_encoder, encoder_class  # noqa: E402
from common.encoders.checkpoints import CheckpointError  # noqa: E402
from common.extraction.extract import embed_batch  # noqa: E402

# small but with the real CNN structure: the base models' 7 kernels and
# strides (receptive field 400 samples, one frame per 320 = 20 ms), 16 channels.
# Fewer strides would give more frames per second than the real models and
# attention memory growing with their square (WavLM's position bias on a 5 s
# clip took gigabytes with a 20-sample stride).
CNN = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, **CNN)


def _save(model, directory: Path, *extractors) -> Path:
    model.eval()
    model.save_pretrained(directory)
    for fe in extractors:
        fe.save_pretrained(directory)
    return directory


def make_hubert(root: Path, **overrides):
    cfg = transformers.HubertConfig(**{**TINY, **overrides})  # group norm, like hubert-base
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False)
    return _save(transformers.HubertModel(cfg), root / "hubert-base", fe)


def make_wav2vec2(root: Path, layer_norm: bool = False):
    extra = dict(feat_extract_norm="layer", do_stable_layer_norm=True) if layer_norm else {}
    cfg = transformers.Wav2Vec2Config(**TINY, **extra, codevector_dim=8, proj_codevector_dim=8,
                                      num_codevectors_per_group=4)
    # the official checkpoint is a pre-training one: wav2vec2.* keys + quantizer
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=layer_norm)
    return _save(transformers.Wav2Vec2ForPreTraining(cfg), root / "wav2vec2-base", fe)


def make_wavlm(root: Path):
    cfg = transformers.WavLMConfig(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True,
                                   num_buckets=32, max_bucket_distance=80)
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    return _save(transformers.WavLMModel(cfg), root / "wavlm-base-plus", fe)


def make_data2vec(root: Path):
    cfg = transformers.Data2VecAudioConfig(**TINY, num_conv_pos_embedding_layers=2)
    # no preprocessor_config.json: normalisation follows the CNN's layer norm
    return _save(transformers.Data2VecAudioModel(cfg), root / "data2vec-audio-base")


def make_whisper(root: Path, max_source_positions: int = 1500, chunk_length: int | None = 30):
    """chunk_length=None: no preprocessor_config.json."""
    cfg = transformers.WhisperConfig(
        d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, vocab_size=64, max_target_positions=8,
        max_source_positions=max_source_positions,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    extractors = [] if chunk_length is None else [
        transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=chunk_length)]
    # openai/whisper-base holds a WhisperForConditionalGeneration (model.* keys)
    return _save(transformers.WhisperForConditionalGeneration(cfg), root / "whisper-base", *extractors)


def make_ast(root: Path, max_length: int = 128, extractor_max_length: int | None = None):
    cfg = transformers.ASTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_length=max_length, num_mel_bins=128, num_labels=5)
    return _save(transformers.ASTForAudioClassification(cfg), root / "ast-finetuned-audioset-10-10-0.4593",
                 transformers.ASTFeatureExtractor(max_length=extractor_max_length or max_length))


def make_clap(root: Path):
    audio = transformers.ClapAudioConfig(patch_embeds_hidden_size=8, hidden_size=64, depths=[1, 1, 1, 1],
                                         num_attention_heads=[1, 1, 2, 2], projection_dim=24)
    text = transformers.ClapTextConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, projection_dim=24, max_position_embeddings=40)
    cfg = transformers.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=24)
    # laion/clap-htsat-unfused is a full ClapModel (text + audio towers)
    return _save(transformers.ClapModel(cfg), root / "clap-htsat-unfused",
                 transformers.ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad"))


MAKERS = {"hubert": make_hubert, "wav2vec2": make_wav2vec2, "wavlm": make_wavlm,
          "data2vec_audio": make_data2vec, "whisper": make_whisper, "ast": make_ast, "clap": make_clap}


def expected_layers(name: str, directory: Path) -> dict[str, int]:
    cfg = json.loads((directory / "config.json").read_text())
    if name == "whisper":
        return {f"layer{i}": cfg["d_model"] for i in range(cfg["encoder_layers"] + 1)}
    if name == "clap":
        audio = cfg["audio_config"]
        return {"pooled": audio["hidden_size"], "audio_embeds": audio["projection_dim"]}
    dims = {f"layer{i}": cfg["hidden_size"] for i in range(cfg["num_hidden_layers"] + 1)}
    if name == "ast":
        dims.update(token_mean=cfg["hidden_size"], pooled=cfg["hidden_size"])
    return dims


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_contract_and_layers(name, tmp_path):
    directory = MAKERS[name](tmp_path)
    encoder = build_encoder(name, pretrained_dir=tmp_path)
    check_encoder(encoder)
    assert encoder.layer_dims() == expected_layers(name, directory)
    assert list(encoder.layer_dims()) == list(expected_layers(name, directory))  # depth order
    assert encoder.default_layer == {"ast": "pooled", "clap": "audio_embeds"}.get(name, encoder.layers[-1].name)
    config = encoder.config()
    json.dumps(config)
    assert config["directory"] == directory.name
    assert config["weights_bytes"] > 0 and config["config_sha256"]
    assert not any(p.requires_grad for p in encoder.parameters())


def test_last_layer_is_last_hidden_state_and_matches_feature_extractor(tmp_path):
    """Our in-torch normalisation == Wav2Vec2FeatureExtractor; the default
    layer == the model's last_hidden_state (also for pre-LN models)."""
    directory = make_wavlm(tmp_path)
    encoder = build_encoder("wavlm", pretrained_dir=tmp_path)
    assert encoder.do_normalize and encoder.normalize_source == "preprocessor_config.json"
    x = torch.randn(1, 16000) * 0.3 + 0.05
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
    ref_inputs = fe([x[0].numpy()], sampling_rate=16000, return_tensors="pt")
    model = transformers.WavLMModel.from_pretrained(str(directory)).eval()
    with torch.inference_mode():
        ref = model(ref_inputs.input_values, attention_mask=ref_inputs.attention_mask).last_hidden_state
        ours, mask = encoder(x, torch.tensor([16000]), [encoder.default_layer])[encoder.default_layer]
    assert mask.all() and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def _pooled(encoder, waveforms, lengths):
    names = [layer.name for layer in encoder.layers]
    with torch.inference_mode():
        out = encoder(waveforms, lengths, names)
    pooled = {}
    for name, (feats, mask) in out.items():
        m = mask[..., None].to(feats.dtype)
        pooled[name] = (feats * m).sum(1) / m.sum(1)
    return pooled


@pytest.mark.parametrize("name", ["wav2vec2", "wavlm", "whisper", "ast", "clap"])
def test_padding_never_changes_an_item(name, tmp_path):
    if name == "wav2vec2":
        make_wav2vec2(tmp_path, layer_norm=True)
    else:
        MAKERS[name](tmp_path)
    encoder = build_encoder(name, pretrained_dir=tmp_path)
    assert encoder.padding_invariant, f"{name} with a layer-norm CNN / per-item features must be padding-invariant"
    sr = encoder.sample_rate
    short, long = int(0.6 * sr), int(1.1 * sr)
    a, b = torch.randn(short) * 0.2, torch.randn(long) * 0.2
    alone = _pooled(encoder, a[None], torch.tensor([short]))
    batch = torch.zeros(2, long)
    batch[0, :short], batch[1] = a, b
    padded = _pooled(encoder, batch, torch.tensor([short, long]))
    for layer in alone:
        torch.testing.assert_close(padded[layer][0], alone[layer][0], atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f"{name}/{layer}: {m}")


def test_group_norm_models_are_not_padding_invariant(tmp_path):
    make_hubert(tmp_path)
    make_wav2vec2(tmp_path, layer_norm=False)
    for name in ("hubert", "wav2vec2"):
        assert encoder_class(name).padding_invariant is False
        encoder = build_encoder(name, pretrained_dir=tmp_path)
        assert encoder.padding_invariant is False and not encoder.use_attention_mask
    # data2vec-audio: layer-norm CNN and a mask, but its stacked positional
    # convs let padding reach the last valid frames
    make_data2vec(tmp_path)
    assert encoder_class("data2vec_audio").padding_invariant is False
    encoder = build_encoder("data2vec_audio", pretrained_dir=tmp_path)
    assert encoder.padding_invariant is False and encoder.use_attention_mask
    # hubert-base does not normalise its input; wav2vec2-base's extractor does
    assert build_encoder("hubert", pretrained_dir=tmp_path).do_normalize is False
    assert build_encoder("wav2vec2", pretrained_dir=tmp_path).do_normalize is True
    # equal-length batch == items alone (what the pipeline relies on)
    encoder = build_encoder("hubert", pretrained_dir=tmp_path)
    x = torch.randn(2, 12000) * 0.2
    both = _pooled(encoder, x, torch.tensor([12000, 12000]))
    one = _pooled(encoder, x[1:], torch.tensor([12000]))
    torch.testing.assert_close(both["layer2"][1], one["layer2"][0], atol=1e-4, rtol=1e-4)


def test_normalize_option_and_feat_extract_norm_fallback(tmp_path):
    make_hubert(tmp_path)
    (tmp_path / "hubert-base" / "preprocessor_config.json").unlink()
    assert build_encoder("hubert", pretrained_dir=tmp_path).do_normalize is False  # group norm
    assert build_encoder("hubert", pretrained_dir=tmp_path, normalize="true").do_normalize is True
    make_data2vec(tmp_path)
    assert build_encoder("data2vec_audio", pretrained_dir=tmp_path).do_normalize is True  # layer norm
    with pytest.raises(ValueError, match="unknown option"):
        build_encoder("hubert", pretrained_dir=tmp_path, nope="1")


def test_frame_counts_follow_the_cnn(tmp_path):
    make_hubert(tmp_path)
    encoder = build_encoder("hubert", pretrained_dir=tmp_path)
    x = torch.randn(2, 16000) * 0.1
    with torch.inference_mode():
        feats, mask = encoder(x, torch.tensor([16000, 8000]), ["layer0"])["layer0"]
    counts = encoder.model._get_feat_extract_output_lengths(torch.tensor([16000, 8000]))
    assert mask.sum(1).tolist() == counts.tolist() and feats.shape[1] == counts[0]
    assert counts.tolist() == [49, 24]  # 20 ms frames, as hubert-base gives
    # shorter than the receptive field (400 samples, as in the base models) still yields one frame
    assert encoder.min_samples == 400
    with torch.inference_mode():
        feats, mask = encoder(torch.randn(1, 200), torch.tensor([200]), ["layer2"])["layer2"]
    assert mask.sum() == 1 and torch.isfinite(feats).all()


def test_whisper_valid_frames_and_window(tmp_path):
    make_whisper(tmp_path)
    encoder = build_encoder("whisper", pretrained_dir=tmp_path)
    assert encoder.window_seconds == 30.0 and encoder.sample_rate == 16000
    x = torch.randn(2, 3 * 16000) * 0.1
    with torch.inference_mode():
        feats, mask = encoder(x, torch.tensor([3 * 16000, 16000]), ["layer2"])["layer2"]
    assert feats.shape[1] == 1500  # 30 s of encoder frames, as Whisper requires
    assert mask[0].sum() == 150 and mask[1].sum() == 50


def _heard(encoder, seconds: float) -> bool:
    """Does audio at `seconds` into a clip change its pooled embedding?"""
    sr = encoder.sample_rate
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(int((seconds + 0.5) * sr))).astype(np.float32)
    changed = clip.copy()
    changed[int(seconds * sr):] = 0.5 * rng.standard_normal(len(clip) - int(seconds * sr))
    layer = encoder.default_layer
    pooled = embed_batch(encoder, [clip, changed], [layer], "mean", torch.device("cpu"))[layer]
    return not np.allclose(pooled[0], pooled[1], atol=1e-6)


def test_ast_windows_are_the_checkpoints_input_length(tmp_path):
    """AST's feature extractor keeps max_length frames (128 here, as in the
    speech-commands checkpoints) and drops the rest: extraction must cut
    windows of that length, not of the AudioSet checkpoint's 10.24 s, or the
    end of every longer clip is never heard."""
    make_ast(tmp_path)
    encoder = build_encoder("ast", pretrained_dir=tmp_path)
    assert encoder.window_seconds == pytest.approx(1.28)
    assert _heard(encoder, 2.0)
    make_ast(tmp_path / "audioset", max_length=1024)  # the AudioSet checkpoint's: its stores stay valid
    assert build_encoder("ast", pretrained_dir=tmp_path / "audioset").window_seconds == 10.24
    make_ast(tmp_path / "mismatched", max_length=128, extractor_max_length=1024)
    with pytest.raises(CheckpointError, match="max_length 1024 frames but the model takes 128"):
        build_encoder("ast", pretrained_dir=tmp_path / "mismatched")


def test_whisper_window_follows_the_checkpoint_and_must_match_its_extractor(tmp_path):
    make_whisper(tmp_path, max_source_positions=50, chunk_length=1)  # a 1 s Whisper
    encoder = build_encoder("whisper", pretrained_dir=tmp_path)
    assert encoder.window_seconds == 1.0 and _heard(encoder, 1.5)
    make_whisper(tmp_path / "bare", max_source_positions=50, chunk_length=None)  # default extractor: 30 s
    with pytest.raises(CheckpointError, match=r"takes 1 s inputs .* default feature extractor pads to 30 s"):
        build_encoder("whisper", pretrained_dir=tmp_path / "bare")


def test_missing_checkpoint_names_folder_and_hub_id(tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_encoder("whisper", pretrained_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "whisper-base") in message and "openai/whisper-base" in message
    for name, hub_id in [("hubert", "facebook/hubert-base-ls960"), ("ast", "MIT/ast-finetuned-audioset-10-10-0.4593"),
                         ("clap", "laion/clap-htsat-unfused"), ("wavlm", "microsoft/wavlm-base-plus")]:
        with pytest.raises(CheckpointError, match=hub_id):
            build_encoder(name, pretrained_dir=tmp_path)
    # config without weights
    (tmp_path / "hubert-base").mkdir()
    (tmp_path / "hubert-base" / "config.json").write_text(transformers.HubertConfig(**TINY).to_json_string())
    with pytest.raises(CheckpointError, match="no weights.*hubert-base"):
        build_encoder("hubert", pretrained_dir=tmp_path)
    # checkpoint= option, and a checkpoint of another model
    make_wavlm(tmp_path)
    with pytest.raises(CheckpointError, match="model_type 'wavlm'"):
        build_encoder("hubert", pretrained_dir=tmp_path, checkpoint=str(tmp_path / "wavlm-base-plus"))
    assert build_encoder("wavlm", pretrained_dir=tmp_path / "elsewhere",
                         checkpoint=str(tmp_path / "wavlm-base-plus")).layers


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_bin_weights_load_without_running_pickled_code(tmp_path):
    directory = make_hubert(tmp_path)
    from safetensors.torch import load_file
    state = load_file(str(directory / "model.safetensors"))
    reference = build_encoder("hubert", pretrained_dir=tmp_path)
    (directory / "model.safetensors").unlink()
    torch.save(state, directory / "pytorch_model.bin")
    encoder = build_encoder("hubert", pretrained_dir=tmp_path)
    assert encoder.config()["weights"] == "pytorch_model.bin"
    x = torch.randn(1, 8000) * 0.1
    with torch.inference_mode():
        a = reference(x, torch.tensor([8000]), ["layer2"])["layer2"][0]
        b = encoder(x, torch.tensor([8000]), ["layer2"])["layer2"][0]
    torch.testing.assert_close(a, b)
    # a .bin that would run code when unpickled is refused, and the code never runs
    marker = tmp_path / "pwned"
    with open(directory / "pytorch_model.bin", "wb") as f:
        pickle.dump({"w": _Touch(marker)}, f)
    with pytest.raises(CheckpointError):
        build_encoder("hubert", pretrained_dir=tmp_path)
    assert not marker.exists()


def test_missing_weights_are_refused(tmp_path):
    """A checkpoint that leaves layers randomly initialised is an error, not a warning."""
    directory = make_hubert(tmp_path)
    from safetensors.torch import load_file, save_file
    state = load_file(str(directory / "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.startswith("encoder.layers.1.")}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing weights"):
        build_encoder("hubert", pretrained_dir=tmp_path)


def test_ast_masks_the_patch_tokens_that_cover_only_padding(tmp_path):
    """Which tokens are padding is read off the spectrogram the model really
    sees (fbank frames past the item's own hold the padding value) and off the
    patch embeddings (a padding-only token equals that token of an all-padding
    input); the mask must agree with both, token by token."""
    make_ast(tmp_path)
    encoder = build_encoder("ast", pretrained_dir=tmp_path)
    config, fe = encoder.model.config, encoder.feature_extractor
    grid = (encoder.frequency_patches, encoder.time_patches)
    assert grid == ((config.num_mel_bins - config.patch_size) // config.frequency_stride + 1,
                    (config.max_length - config.patch_size) // config.time_stride + 1)
    pad_value = (0.0 - fe.mean) / (2 * fe.std)  # a zero fbank frame after normalisation
    all_padding = torch.full((1, config.max_length, config.num_mel_bins), pad_value)
    with torch.inference_mode():
        padding_tokens = encoder.model.embeddings(all_padding)[0, encoder.special_tokens:]
    lengths = [100, 3000, 7000, 12000, 20480]  # < one fbank frame ... the whole 128-frame input
    waves = torch.zeros(len(lengths), max(lengths))
    for row, n in enumerate(lengths):
        waves[row, :n] = torch.randn(n) * 0.2
    with torch.inference_mode():
        tokens, mask = encoder(waves, torch.tensor(lengths), ["layer0"])["layer0"]
    assert tokens.shape[1] == grid[0] * grid[1]  # cls and distillation tokens are not in token layers
    for row, n in enumerate(lengths):
        spec = fe([waves[row, : max(n, 400)].numpy()], sampling_rate=16000, return_tensors="pt").input_values[0]
        is_padding = (spec == pad_value).all(dim=1)
        real_frames = int((~is_padding).nonzero().max()) + 1
        expected = torch.tensor([j * config.time_stride < real_frames for j in range(grid[1])]).repeat(grid[0])
        assert torch.equal(mask[row], expected), f"{n} samples"
        same_as_padding = torch.isclose(tokens[row], padding_tokens, atol=1e-5).all(dim=1)
        assert torch.equal(same_as_padding, ~expected), f"{n} samples: mask != tokens seen by the model"
    assert mask[-1].all() and mask[0].sum() == grid[0]  # the full input: every token; the shortest: one column
    assert "token_mask" in encoder.config()  # stores of the unmasked token layers are not reused

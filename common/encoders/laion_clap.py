"""LAION-CLAP, the query encoder of AudioSep, from its original checkpoint.

AudioSep (`models/clap_encoder.py`) turns a text or audio query into the 512-d
condition of its separation network with LAION-CLAP (Wu et al., 2023): an
RoBERTa-base text branch and an HTS-AT audio branch, each followed by a
two-layer ReLU projection to 512 and L2-normalised. It loads the LAION
checkpoint `music_speech_audioset_epoch_15_esc_89.98.pt` (HTS-AT "base",
non-fusion), shipped beside AudioSep's own in the Hugging Face space
Audio-AGI/AudioSep (`checkpoint/`).

Both branches are transformers' `ClapTextModelWithProjection` and
`ClapAudioModelWithProjection`, which follow LAION-CLAP's layout; the LAION
keys are mapped onto theirs here (`laion_to_transformers`), and the sizes
(HTS-AT tiny/base/large, RoBERTa depth) are read from the checkpoint's
shapes. The mel front end is transformers' `ClapFeatureExtractor` with the
settings of LAION's non-fusion HTS-AT (librosa/Slaney mel filters, 50 Hz -
14 kHz, repeat-padding to 10 s), so the checkpoint's STFT and mel kernels,
Swin index tables and shifted-window masks are recomputed, never read.

Differences from upstream, documented where they matter:
- a query clip longer than 10 s is cut to its first 10 s (upstream takes a
  random 10-s crop), so the same clip always gives the same embedding;
- texts are not padded to 512 tokens (the attention mask makes padding
  irrelevant; upstream pads every text to 512).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .checkpoints import CheckpointError, load_strict, read_state_dict

CLAP_CHECKPOINT_NAME = "music_speech_audioset_epoch_15_esc_89.98.pt"
SAMPLE_RATE = 48000
CLIP_SAMPLES = 10 * SAMPLE_RATE  # HTS-AT sees 10 s: shorter clips are repeated, longer ones cut
EMBEDDING_SIZE = 512
# LAION's HTS-AT front end (model_configs/HTSAT-*.json audio_cfg)
FFT_SIZE, HOP, MEL_BINS, FMIN, FMAX = 1024, 480, 64, 50, 14000
# RoBERTa-base facts the checkpoint's shapes do not tell
ROBERTA_HEAD_SIZE = 64
ROBERTA_LAYER_NORM_EPS = 1e-5

TOKENIZER_REPO = "FacebookAI/roberta-base"
TOKENIZER_DIR = "roberta-base"
TOKENIZER_FILES = ("vocab.json", "merges.txt")
MAX_TOKENS = 512

# Checkpoint tensors our model recomputes or does not have: torchlibrosa's
# STFT/mel kernels, Swin index tables and shifted-window masks, RoBERTa's
# position ids, the AudioSet head, the contrastive-training MLPs and scales.
UNUSED = re.compile(r"(^audio_branch\.(spectrogram_extractor|logmel_extractor|tscam_conv|head)\.)"
                    r"|(\.relative_position_index$)|(\.attn_mask$)|(^text_branch\.embeddings\.position_ids$)"
                    r"|(^(audio|text)_transform\.)|(^logit_scale_[at]$)")
# transformers' buffers that are computed, or (the BatchNorm counter) unused in eval mode
COMPUTED_BUFFERS = ("relative_position_index", "position_ids", "token_type_ids", "num_batches_tracked")
# HTS-AT block names (LAION, Swin v1) -> transformers' ClapAudio names
SWIN_NAMES = [(".norm1.", ".layernorm_before."), (".norm2.", ".layernorm_after."),
              (".attn.proj.", ".attention.output.dense."),
              (".attn.relative_position_bias_table", ".attention.self.relative_position_bias_table"),
              (".mlp.fc1.", ".intermediate.dense."), (".mlp.fc2.", ".output.dense.")]


class TokenizerNotFound(UserError):
    """The RoBERTa tokenizer files are neither on disk nor downloadable."""


def laion_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LAION-CLAP state dict without the `module.` prefix of its DDP training."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def _count(state: Mapping, pattern: str) -> int:
    return len({m.group(1) for k in state for m in [re.match(pattern, k)] if m})


def transformers_configs(state: Mapping[str, torch.Tensor], source: Path | str):
    """(ClapTextConfig, ClapAudioConfig) of the model whose LAION keys are in `state`."""
    from transformers import ClapAudioConfig, ClapTextConfig
    if any(k.startswith(("audio_branch.fusion_model.", "audio_branch.mel_conv")) for k in state):
        raise CheckpointError(f"{source} is a fusion LAION-CLAP checkpoint; AudioSep uses the non-fusion "
                              f"{CLAP_CHECKPOINT_NAME}")
    needed = ("text_branch.embeddings.word_embeddings.weight", "audio_branch.patch_embed.proj.weight",
              "text_projection.2.weight", "audio_projection.2.weight", "audio_branch.norm.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"{source} is not a LAION-CLAP (RoBERTa + HTS-AT) checkpoint: no {missing[0]}; "
                              f"expected AudioSep's {CLAP_CHECKPOINT_NAME}")
    vocab, hidden = state["text_branch.embeddings.word_embeddings.weight"].shape
    text = ClapTextConfig(
        vocab_size=vocab, hidden_size=hidden, num_attention_heads=hidden // ROBERTA_HEAD_SIZE,
        num_hidden_layers=_count(state, r"text_branch\.encoder\.layer\.(\d+)\."),
        intermediate_size=state["text_branch.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["text_branch.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["text_branch.embeddings.token_type_embeddings.weight"].shape[0],
        layer_norm_eps=ROBERTA_LAYER_NORM_EPS, projection_dim=state["text_projection.2.weight"].shape[0])
    stages = _count(state, r"audio_branch\.layers\.(\d+)\.")
    depths = [_count(state, rf"audio_branch\.layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)]
    tables = [state[f"audio_branch.layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in range(stages)]
    patch = state["audio_branch.patch_embed.proj.weight"]
    width = patch.shape[0]
    audio = ClapAudioConfig(
        patch_embeds_hidden_size=width, patch_size=patch.shape[-1], depths=depths,
        num_attention_heads=[t.shape[1] for t in tables], window_size=(round(tables[0].shape[0] ** 0.5) + 1) // 2,
        hidden_size=state["audio_branch.norm.weight"].shape[0], num_mel_bins=state["audio_branch.bn0.weight"].shape[0],
        mlp_ratio=state["audio_branch.layers.0.blocks.0.mlp.fc1.weight"].shape[0] / width,
        num_hidden_layers=stages, projection_dim=state["audio_projection.2.weight"].shape[0], enable_fusion=False)
    return text, audio


def laion_to_transformers(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """LAION-CLAP keys -> (ClapTextModelWithProjection, ClapAudioModelWithProjection)
    state dicts. HTS-AT's fused qkv projection is split into query, key and
    value; tensors the transformers model computes itself are dropped."""
    text, audio = {}, {}
    for key, value in state.items():
        if UNUSED.search(key):
            continue
        projection = re.match(r"(text|audio)_projection\.([02])\.(weight|bias)$", key)
        if projection:
            kind, index, what = projection.groups()
            target = text if kind == "text" else audio
            target[f"{kind}_projection.linear{1 if index == '0' else 2}.{what}"] = value
        elif key.startswith("text_branch."):
            text["text_model." + key.removeprefix("text_branch.")] = value
        elif key.startswith("audio_branch."):
            name = "audio_model.audio_encoder." + key.removeprefix("audio_branch.")
            name = name.replace("audio_encoder.bn0.", "audio_encoder.batch_norm.")
            for old, new in SWIN_NAMES:
                name = name.replace(old, new)
            qkv = re.match(r"(.*)\.attn\.qkv\.(weight|bias)$", name)
            if qkv:
                for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    audio[f"{qkv.group(1)}.attention.self.{part}.{qkv.group(2)}"] = chunk
            else:
                audio[name] = value
        else:
            text[key] = value  # unknown: reported by the strict load
    return text, audio


def _hub_tokenizer(by_hand: Path, offline: bool) -> Path:
    """RoBERTa-base's tokenizer files in the Hugging Face cache, fetched there
    once (only those two files) unless offline."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError
    hint = (f"put {' and '.join(TOKENIZER_FILES)} of {TOKENIZER_REPO} (https://huggingface.co/{TOKENIZER_REPO}) "
            f"into {by_hand}/ or pass --tokenizer DIR")
    try:
        return Path(huggingface_hub.snapshot_download(TOKENIZER_REPO, allow_patterns=list(TOKENIZER_FILES),
                                                      local_files_only=True))
    except LocalEntryNotFoundError:
        if offline:
            raise TokenizerNotFound(f"the RoBERTa tokenizer files are missing and downloads are off "
                                    f"(--offline or HF_HUB_OFFLINE=1): {hint}") from None
    try:
        return Path(huggingface_hub.snapshot_download(TOKENIZER_REPO, allow_patterns=list(TOKENIZER_FILES)))
    except Exception as err:  # connection, DNS, proxy or hub errors: all mean "not downloadable here"
        raise TokenizerNotFound(f"the RoBERTa tokenizer files are missing and cannot be fetched "
                                f"({type(err).__name__}): {hint}") from err


def roberta_tokenizer(folder: Path, offline: bool | None = None):
    """RoBERTa-base's tokenizer from `folder` if it holds vocab.json and
    merges.txt, else from the Hugging Face cache, fetched there once unless
    `offline` (default: --offline / HF_HUB_OFFLINE, as every download)."""
    from transformers import RobertaTokenizer

    from ..data.fetch import offline as downloads_off
    folder = Path(folder)
    if not all((folder / name).is_file() for name in TOKENIZER_FILES):
        folder = _hub_tokenizer(folder, downloads_off() if offline is None else offline)
    return RobertaTokenizer.from_pretrained(str(folder))


class LaionClap(nn.Module):
    """Text and audio branches of LAION-CLAP; `text_embedding` and
    `audio_embedding` return the L2-normalised 512-d embeddings AudioSep
    conditions on."""

    sample_rate = SAMPLE_RATE

    def __init__(self, text_config, audio_config, tokenizer=None):
        super().__init__()
        from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor, ClapTextModelWithProjection
        self.text = ClapTextModelWithProjection(text_config)
        self.audio = ClapAudioModelWithProjection(audio_config)
        self.tokenizer = tokenizer
        self.features = ClapFeatureExtractor(
            feature_size=audio_config.num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=HOP,
            max_length_s=CLIP_SAMPLES // SAMPLE_RATE, fft_window_size=FFT_SIZE, frequency_min=FMIN,
            frequency_max=FMAX, truncation="rand_trunc", padding="repeatpad")

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], source: Path | str, tokenizer=None) -> "LaionClap":
        """From LAION keys (with or without `module.`); refuses missing,
        unexpected or mis-shaped tensors, naming the first."""
        state = laion_state(state)
        model = cls(*transformers_configs(state, source), tokenizer=tokenizer)
        text, audio = laion_to_transformers(state)
        for branch, branch_state in ((model.text, text), (model.audio, audio)):
            computed = [k for k in branch.state_dict() if k.endswith(COMPUTED_BUFFERS)]
            load_strict(branch, branch_state, source, ignore=computed)
        return model.eval()

    @classmethod
    def from_checkpoint(cls, path: Path, overrides: Mapping[str, torch.Tensor] | None = None,
                        tokenizer=None) -> "LaionClap":
        """The LAION checkpoint file at `path`, with `overrides` (LAION keys)
        replacing its tensors: AudioSep's own checkpoint stores a copy of the
        query encoder that upstream loads over the CLAP file."""
        state = laion_state(read_state_dict(path))
        state.update(laion_state(overrides or {}))
        return cls.from_state(state, path, tokenizer=tokenizer)

    def describe(self) -> dict:
        """Sizes read from the checkpoint (JSON-able)."""
        text, audio = self.text.config, self.audio.config
        return {"text": f"RoBERTa {text.num_hidden_layers} layers x {text.hidden_size}",
                "audio": f"HTS-AT width {audio.patch_embeds_hidden_size} depths {list(audio.depths)}",
                "embedding": text.projection_dim}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def text_embedding(self, texts: Sequence[str]) -> torch.Tensor:
        if self.tokenizer is None:
            raise TokenizerNotFound("this CLAP model has no tokenizer: load it with one to embed text queries")
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt")
        out = self.text(input_ids=tokens["input_ids"].to(self.device),
                        attention_mask=tokens["attention_mask"].to(self.device))
        return nn.functional.normalize(out.text_embeds, dim=-1)

    @torch.no_grad()
    def audio_embedding(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """`clips`: mono float arrays at 48 kHz, each repeated to 10 s or cut
        to its first 10 s."""
        audio = [np.asarray(clip, dtype=np.float64)[:CLIP_SAMPLES] for clip in clips]
        features = self.features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_features"]
        out = self.audio(input_features=features.to(self.device, torch.float32))
        return nn.functional.normalize(out.audio_embeds, dim=-1)

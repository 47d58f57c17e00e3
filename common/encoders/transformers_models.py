"""Encoders from Hugging Face `transformers`, loaded from local directories only.

hubert, wav2vec2, wavlm, data2vec_audio (16 kHz, frame-level), whisper (encoder
only, 30 s windows), ast (AudioSet-finetuned spectrogram transformer) and clap
(LAION CLAP audio tower); ASTTagger is ast with its AudioSet classifier head,
for the AST-guided separator. Each is a few lines on top of `TransformersEncoder`,
which

- finds `pretrained_dir/<default_dir>` or the `checkpoint=DIR` option; with
  neither, fetches only the files it needs from the hub repository, at the
  commit pinned in `hub_revision` (or the `revision=` option), into the
  standard Hugging Face cache (`common.encoders.checkpoints.hub_snapshot`;
  offline: one sentence naming the folder and the hub repository);
- loads with `from_pretrained(dir, local_files_only=True)`, safetensors
  preferred, `pytorch_model.bin` read by transformers with
  `torch.load(weights_only=True)` (no pickled code runs), float32, and refuses
  a checkpoint that leaves weights of the model uninitialised;
- returns every hidden state as a layer `layer0..layerL` (layer0: the input of
  the first transformer block, i.e. CNN/patch embedding output; layerL: the
  model's `last_hidden_state`, the default), with valid-frame masks.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch

from ..options import OptionError, auto_or_boolean, boolean
from .base import Encoder, Frames, Layer
from .checkpoints import CheckpointError, hub_snapshot

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# parameters a frozen feature extractor never uses (training-time masking)
IGNORED_MISSING = ("masked_spec_embed",)


def _as_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return boolean(value)
    except OptionError:
        raise OptionError(f"option {name}={value!r}: expected true or false") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _length_mask(counts: torch.Tensor, num: int) -> torch.Tensor:
    mask = torch.arange(num, device=counts.device)[None, :] < counts[:, None]
    mask[:, 0] = True  # every item keeps at least one frame
    return mask


class TransformersEncoder(Encoder):
    """Shared loader and hidden-state plumbing; subclasses set the class
    attributes below and implement `_run` (waveforms -> named frames)."""

    #: folder under `pretrained_dir` holding config.json and weights
    default_dir: ClassVar[str]
    #: where the official checkpoint comes from
    hub_id: ClassVar[str]
    #: the commit of `hub_id` fetched when there is no local folder (None: main, unpinned)
    hub_revision: ClassVar[str | None]
    #: `transformers` class name loaded with from_pretrained
    model_class: ClassVar[str]
    #: accepted `model_type` values of config.json
    model_types: ClassVar[tuple[str, ...]]
    #: extra files listed in the "download ..." message
    extra_files: ClassVar[tuple[str, ...]] = ()
    options = {"checkpoint": str, "revision": str}

    def __init__(self, model: torch.nn.Module, directory: Path, weights: Path, **settings):
        super().__init__()
        self.model = model
        self.directory = Path(directory)
        self.weights = Path(weights)
        self.settings = settings
        self.layers = []
        self.default_layer = ""

    # ---- locating and loading -------------------------------------------------
    @classmethod
    def _download_hint(cls, directory: Path) -> str:
        files = "config.json, model.safetensors or pytorch_model.bin"
        if cls.extra_files:
            files += ", " + ", ".join(cls.extra_files)
        return (f"download {cls.hub_id} ({files}) into {directory}/ "
                f"(https://huggingface.co/{cls.hub_id}), or pass checkpoint=DIR")

    @classmethod
    def locate(cls, pretrained_dir: Path, checkpoint: str | Path | None = None) -> tuple[Path, Path]:
        """(directory, weight file) of a local checkpoint, or CheckpointError."""
        if checkpoint is not None:
            directory = Path(checkpoint).expanduser()
            if not directory.is_absolute() and not directory.exists():
                directory = Path(pretrained_dir) / directory
        else:
            directory = Path(pretrained_dir) / cls.default_dir
        name = cls.__name__
        if not directory.is_dir():
            raise CheckpointError(f"{name}: checkpoint folder {directory}/ not found: "
                                  + cls._download_hint(directory) + ".")
        if not (directory / "config.json").is_file():
            raise CheckpointError(f"{name}: {directory}/config.json not found: "
                                  + cls._download_hint(directory) + ".")
        for fname in WEIGHT_FILES:
            if (directory / fname).is_file():
                return directory, directory / fname
        raise CheckpointError(f"{name}: no weights (model.safetensors or pytorch_model.bin) in "
                              f"{directory}/: " + cls._download_hint(directory) + ".")

    @classmethod
    def read_config(cls, directory: Path) -> dict:
        try:
            config = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{directory}/config.json cannot be read: {err}") from err
        model_type = config.get("model_type")
        if model_type not in cls.model_types:
            raise CheckpointError(
                f"{cls.__name__}: {directory}/config.json has model_type {model_type!r}, expected "
                f"{' or '.join(map(repr, cls.model_types))}: is this the checkpoint of {cls.hub_id}?")
        return config

    @classmethod
    def load_model(cls, directory: Path, weights: Path) -> torch.nn.Module:
        import transformers
        model_cls = getattr(transformers, cls.model_class)
        safetensors = weights.name.startswith("model.safetensors")
        from transformers.utils import logging as hf_logging
        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        # the load report lists the heads / text tower we leave out on purpose;
        # missing weights are checked below
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model, info = model_cls.from_pretrained(
                str(directory), local_files_only=True, use_safetensors=safetensors,
                dtype=torch.float32, output_loading_info=True)
        except Exception as err:  # unreadable / unsafe / mismatched checkpoints
            raise CheckpointError(
                f"{cls.__name__}: cannot load {directory}/ as {cls.model_class} "
                f"({type(err).__name__}: {str(err)[:300]}). Is it {cls.hub_id}? Weights are read "
                "with safetensors or torch.load(weights_only=True) only.") from err
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        missing = [k for k in info.get("missing_keys", ())
                   if not any(part in k for part in IGNORED_MISSING)]
        mismatched = list(info.get("mismatched_keys", ()))
        if missing or mismatched:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing weights (first: {', '.join(sorted(missing)[:3])})")
            if mismatched:
                parts.append(f"{len(mismatched)} mis-shaped weights (first: {mismatched[:2]})")
            raise CheckpointError(f"{cls.__name__}: {weights} does not match {cls.model_class}: "
                                  + "; ".join(parts) + f". Is it the checkpoint of {cls.hub_id}?")
        model.eval()
        return model

    @classmethod
    def load_feature_extractor(cls, directory: Path, fe_class: str, **defaults):
        """The checkpoint's preprocessor_config.json if present, else the
        class defaults the official checkpoint uses."""
        import transformers
        fe_cls = getattr(transformers, fe_class)
        if (directory / "preprocessor_config.json").is_file():
            return fe_cls.from_pretrained(str(directory), local_files_only=True), True
        return fe_cls(**defaults), False

    @classmethod
    def from_options(cls, pretrained_dir: Path, checkpoint: str | None = None, revision: str | None = None,
                     **options):
        local = Path(pretrained_dir) / cls.default_dir
        fetched = checkpoint is None and (revision is not None or not local.is_dir())
        if fetched:  # a local folder wins unless a revision is asked for
            checkpoint = hub_snapshot(cls.hub_id, revision or cls.hub_revision, by_hand=local)
        directory, weights = cls.locate(pretrained_dir, checkpoint)
        model_type = cls.read_config(directory)["model_type"]
        model = cls.load_model(directory, weights)
        encoder = cls(model, directory, weights, **options)
        encoder.checkpoint_model_type = model_type
        # the cache's snapshot folder is named by the commit hash it holds
        encoder.revision = directory.name if fetched else None
        return encoder

    # ---- description ----------------------------------------------------------
    def config(self) -> dict:
        return {
            "directory": self.directory.name,
            "hub_id": self.hub_id,
            "model_type": getattr(self, "checkpoint_model_type", self.model.config.model_type),
            "config_sha256": _sha256(self.directory / "config.json"),
            "weights": self.weights.name,
            "weights_bytes": self.weights.stat().st_size,
            **({"revision": self.revision} if getattr(self, "revision", None) else {}),
            **{k: v for k, v in self.settings.items() if v is not None},
        }

    # ---- running --------------------------------------------------------------
    def _hidden_layers(self, num_layers: int, dim: int) -> list[Layer]:
        return [Layer(f"layer{i}", dim) for i in range(num_layers + 1)]

    @staticmethod
    def _hidden_states(out) -> list[torch.Tensor]:
        """hidden states with the last one replaced by `last_hidden_state`
        (transformers 5 records the last block's output before a final layer
        norm for pre-LN models; the model output is what users call the last
        layer)."""
        states = list(out.hidden_states)
        states[-1] = out.last_hidden_state
        return states

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor, layers: Sequence[str]) -> dict[str, Frames]:
        raise NotImplementedError

    def forward(self, waveforms, lengths, layers):
        unknown = [name for name in layers if name not in self.layer_dims()]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown} for {type(self).__name__}")
        lengths = lengths.to(waveforms.device).long().clamp(min=1, max=waveforms.shape[1])
        return self._run(waveforms.float(), lengths, list(layers))


# ---- wav2vec 2.0 family ----------------------------------------------------------
class _Wav2Vec2Family(TransformersEncoder):
    """HuBERT, wav2vec 2.0, WavLM, data2vec-audio: raw 16 kHz waveform in,
    one frame per 20 ms out.

    Input normalisation follows the checkpoint's Wav2Vec2FeatureExtractor
    (`do_normalize` in preprocessor_config.json; without that file, normalise
    exactly when config.feat_extract_norm == "layer", the fairseq convention),
    per item over its valid samples, padding left at zero. Models whose CNN
    uses layer norm get an attention mask and are padding-invariant (except
    data2vec-audio, whose 5-layer positional conv leaks padding into the last
    valid frames); group norm models (hubert-base, wav2vec2-base) get no mask,
    as their feature extractor says, and are not: batches must hold
    equal-length items."""

    sample_rate = 16000
    padding_invariant = False  # set per loaded config in __init__ (see above)
    min_seconds = 0.025  # receptive field of the standard CNN (400 samples)
    options = {"checkpoint": str, "revision": str, "normalize": auto_or_boolean}
    extra_files = ("preprocessor_config.json",)

    def __init__(self, model, directory, weights, normalize: str | bool | None = None):
        super().__init__(model, directory, weights)
        config = model.config
        layer_norm_cnn = getattr(config, "feat_extract_norm", "layer") == "layer"
        if normalize is None or str(normalize).lower() == "auto":
            prep = directory / "preprocessor_config.json"
            if prep.is_file():
                prep_cfg = json.loads(prep.read_text())
                do_normalize = bool(prep_cfg.get("do_normalize", True))
                self.normalize_source = "preprocessor_config.json"
            else:
                do_normalize = layer_norm_cnn
                self.normalize_source = "feat_extract_norm"
        else:
            do_normalize = _as_bool(normalize, "normalize")
            self.normalize_source = "option"
        self.do_normalize = do_normalize
        # an instance attribute: the loaded checkpoint decides. data2vec-audio
        # stacks several positional convs with a layer norm between them, so
        # padded frames leak into the last valid ones even with a mask.
        self.padding_invariant = layer_norm_cnn and getattr(config, "num_conv_pos_embedding_layers", 1) <= 1
        self.use_attention_mask = layer_norm_cnn
        self.min_samples = self._receptive_field(config)
        self.layers = self._hidden_layers(config.num_hidden_layers, config.hidden_size)
        self.default_layer = self.layers[-1].name
        self.settings = {"normalize": do_normalize, "normalize_from": self.normalize_source,
                         "attention_mask": self.use_attention_mask}

    @staticmethod
    def _receptive_field(config) -> int:
        field = 1
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            field = (field - 1) * stride + kernel
        return field

    def _run(self, waveforms, lengths, layers):
        batch, total = waveforms.shape
        if total < self.min_samples:
            waveforms = torch.nn.functional.pad(waveforms, (0, self.min_samples - total))
            total = self.min_samples
        valid = torch.arange(total, device=waveforms.device)[None, :] < lengths[:, None]
        x = waveforms * valid
        if self.do_normalize:  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            n = lengths[:, None].to(x.dtype)
            mean = x.sum(1, keepdim=True) / n
            var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * valid
        kwargs = {"attention_mask": valid.long()} if self.use_attention_mask else {}
        out = self.model(x, output_hidden_states=True, **kwargs)
        states = self._hidden_states(out)
        counts = self.model._get_feat_extract_output_lengths(lengths).long().clamp(min=1)
        mask = _length_mask(counts, states[0].shape[1])
        return {name: (states[int(name[5:])], mask) for name in layers}


class HubertEncoder(_Wav2Vec2Family):
    default_dir = "hubert-base"
    hub_id = "facebook/hubert-base-ls960"
    hub_revision = "dba3bb02fda4248b6e082697eee756de8fe8aa8a"
    model_class = "HubertModel"
    model_types = ("hubert",)


class Wav2Vec2Encoder(_Wav2Vec2Family):
    default_dir = "wav2vec2-base"
    hub_id = "facebook/wav2vec2-base"
    hub_revision = "0b5b8e868dd84f03fd87d01f9c4ff0f080fecfe8"
    model_class = "Wav2Vec2Model"
    model_types = ("wav2vec2",)


class WavLMEncoder(_Wav2Vec2Family):
    default_dir = "wavlm-base-plus"
    hub_id = "microsoft/wavlm-base-plus"
    hub_revision = "4c66d4806a428f2e922ccfa1a962776e232d487b"
    model_class = "WavLMModel"
    model_types = ("wavlm",)


class Data2VecAudioEncoder(_Wav2Vec2Family):
    default_dir = "data2vec-audio-base"
    hub_id = "facebook/data2vec-audio-base"
    # No commit hash of this repository is quoted in any public code or issue
    # we could search (MTEB pins only data2vec-audio-base-960h), so `main`;
    # the commit actually fetched is recorded with the features.
    hub_revision = None
    model_class = "Data2VecAudioModel"
    model_types = ("data2vec-audio",)


# ---- Whisper ----------------------------------------------------------------------
class WhisperEncoder(TransformersEncoder):
    """Whisper's encoder on log-mel features from WhisperFeatureExtractor.
    Every item is padded to the 30 s window Whisper requires (3000 mel
    frames, 1500 encoder frames; a checkpoint's own max_source_positions
    and chunk_length decide, and must agree); only the frames covering real audio are
    valid (50 per second). Each item's input depends only on its own samples,
    so batching is padding-invariant."""

    sample_rate = 16000
    window_seconds = 30.0
    padding_invariant = True
    default_dir = "whisper-base"
    hub_id = "openai/whisper-base"
    hub_revision = "e37978b90ca9030d5170a5c07aadb050351a65bb"
    model_class = "WhisperModel"
    model_types = ("whisper",)
    extra_files = ("preprocessor_config.json",)

    def __init__(self, model, directory, weights):
        encoder = model.get_encoder()
        super().__init__(encoder, directory, weights)
        self.feature_extractor, self.has_preprocessor = self.load_feature_extractor(
            directory, "WhisperFeatureExtractor", feature_size=encoder.config.num_mel_bins)
        config = encoder.config
        self.layers = self._hidden_layers(config.encoder_layers, config.d_model)
        self.default_layer = self.layers[-1].name
        fe = self.feature_extractor
        # encoder frames per second: mel hop times the stride of both convs
        self.samples_per_frame = fe.hop_length * encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.window_samples = fe.n_samples
        # the encoder takes exactly max_source_positions frames: a feature
        # extractor padding to another length fails on the first batch
        model_samples = config.max_source_positions * self.samples_per_frame
        if model_samples != self.window_samples:
            source = "its preprocessor_config.json" if self.has_preprocessor else "the default feature extractor"
            raise CheckpointError(
                f"WhisperEncoder: {directory}/ takes {model_samples / self.sample_rate:g} s inputs "
                f"(max_source_positions {config.max_source_positions}) but {source} pads to "
                f"{self.window_samples / self.sample_rate:g} s (chunk_length): give the folder the "
                "preprocessor_config.json that came with the checkpoint.")
        self.window_seconds = self.window_samples / self.sample_rate
        self.settings = {"preprocessor_config": self.has_preprocessor}

    def _run(self, waveforms, lengths, layers):
        lengths = lengths.clamp(max=self.window_samples)
        audio = [w[: int(n)].detach().cpu().numpy() for w, n in zip(waveforms, lengths)]
        feats = self.feature_extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt",
                                       padding="max_length", truncation=True).input_features
        out = self.model(feats.to(waveforms.device), output_hidden_states=True)
        states = self._hidden_states(out)
        counts = torch.ceil(lengths.double() / self.samples_per_frame).long()
        mask = _length_mask(counts, states[0].shape[1])
        return {name: (states[int(name[5:])], mask) for name in layers}


# ---- AST --------------------------------------------------------------------------
class ASTEncoder(TransformersEncoder):
    """Audio Spectrogram Transformer (AudioSet fine-tuned). Layers: the hidden
    states layer0..layerL and `token_mean` (last_hidden_state) as patch
    tokens, and `pooled` (pooler output, clip-level, the default). Each item
    is featurised on its own samples and padded to max_length frames, so
    batching is padding-invariant.

    Patch tokens that cover only padding are masked out. The patch grid comes
    from the config: a patch_size x patch_size conv with strides
    (frequency_stride, time_stride) over the [mel, max_length] fbank gives
    f x t patches, flattened frequency-major (token k has time index k % t),
    and time patch j starts at fbank frame j * time_stride; it is valid while
    that frame holds real audio. The item's fbank frames are Kaldi's
    (25 ms window, 10 ms shift, no edge padding: 1 + (n - 400) // 160 at 16
    kHz). The cls and distillation tokens (first two) are never part of the
    token layers: they summarise the clip and form the `pooled` layer."""

    sample_rate = 16000
    window_seconds = 10.24
    padding_invariant = True
    min_seconds = 0.025  # one 25 ms fbank frame
    default_dir = "ast-finetuned-audioset-10-10-0.4593"
    hub_id = "MIT/ast-finetuned-audioset-10-10-0.4593"
    hub_revision = "f826b80d28226b62986cc218e5cec390b1096902"
    model_class = "ASTModel"
    model_types = ("audio-spectrogram-transformer",)
    extra_files = ("preprocessor_config.json",)
    special_tokens = 2  # cls + distillation
    fbank_window, fbank_shift = 400, 160  # Kaldi fbank defaults at 16 kHz: 25 ms, 10 ms

    def __init__(self, model, directory, weights):
        super().__init__(model, directory, weights)
        config = model.config
        self.feature_extractor, self.has_preprocessor = self.load_feature_extractor(
            directory, "ASTFeatureExtractor", num_mel_bins=config.num_mel_bins, max_length=config.max_length)
        self.max_frames = int(self.feature_extractor.max_length)
        if self.max_frames != config.max_length:  # the position embeddings fit max_length frames only
            raise CheckpointError(
                f"ASTEncoder: {directory}/preprocessor_config.json pads to max_length {self.max_frames} frames but "
                f"the model takes {config.max_length} (config.json): give the folder the "
                "preprocessor_config.json that came with the checkpoint.")
        # the checkpoint's input length, not the class's 10.24 s: the feature
        # extractor cuts every clip to max_length frames, so longer windows
        # would lose their end (AST speech-commands checkpoints take 128 frames)
        self.window_seconds = self.max_frames * self.fbank_shift / self.sample_rate
        self.frequency_patches, self.time_patches = model.embeddings.get_shape(config)
        self.time_stride = config.time_stride
        self.layers = self._hidden_layers(config.num_hidden_layers, config.hidden_size)
        self.layers += [Layer("token_mean", config.hidden_size), Layer("pooled", config.hidden_size)]
        self.default_layer = "pooled"
        # token layers of earlier versions averaged padding tokens too: a new config, new stores
        self.settings = {"preprocessor_config": self.has_preprocessor, "token_mask": "padding-only patches excluded"}

    def token_mask(self, lengths: torch.Tensor) -> torch.Tensor:
        """[B, f * t] True for the patch tokens whose time patch starts on an
        fbank frame of real audio (items of `lengths` samples)."""
        samples = lengths.clamp(min=self.fbank_window)  # shorter items are zero-padded to one frame
        frames = (1 + (samples - self.fbank_window) // self.fbank_shift).clamp(max=self.max_frames)
        starts = torch.arange(self.time_patches, device=lengths.device) * self.time_stride
        valid_times = starts[None, :] < frames[:, None]  # [B, t]; patch 0 always holds real frames
        return valid_times.repeat(1, self.frequency_patches)

    def input_values(self, audio: Sequence[np.ndarray]) -> torch.Tensor:
        """The checkpoint's fbank features of each 16 kHz clip, [B, max_length, mels]."""
        audio = [np.pad(item, (0, max(0, self.fbank_window - len(item)))) for item in audio]  # >= one fbank frame
        return self.feature_extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt").input_values

    def _run(self, waveforms, lengths, layers):
        feats = self.input_values([w[: int(n)].detach().cpu().numpy() for w, n in zip(waveforms, lengths)])
        out = self.model(feats.to(waveforms.device), output_hidden_states=True)
        states = self._hidden_states(out)
        tokens_valid = self.token_mask(lengths).to(out.last_hidden_state.device)
        result = {}
        for name in layers:
            if name == "pooled":
                pooled = out.pooler_output[:, None, :]
                result[name] = (pooled, torch.ones(pooled.shape[:2], dtype=torch.bool, device=pooled.device))
                continue
            tokens = (out.last_hidden_state if name == "token_mean" else states[int(name[5:])])
            result[name] = (tokens[:, self.special_tokens:], tokens_valid)
        return result


class ASTTagger(ASTEncoder):
    """The same checkpoint with its AudioSet classifier head kept (the
    AST-guided separator's classifier): `tag` gives a clip's class
    probabilities and how much the last block's cls and distillation tokens
    attend to each patch of the spectrogram grid."""

    model_class = "ASTForAudioClassification"

    def __init__(self, model, directory, weights):
        super().__init__(model.audio_spectrogram_transformer, directory, weights)
        self.classifier = model.classifier
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}

    @torch.no_grad()
    def tag(self, audio: np.ndarray, crop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(sigmoid class probabilities [labels], attention [frequency
        patches, time patches]) of one 16 kHz clip, time patches: those
        `token_mask` keeps (the later ones see only padding). The attention
        is the softmax of the last block's
        queries of the two special tokens against every patch key, averaged
        over heads and both tokens; only the queries of those two tokens are
        recomputed (from the block's input, caught by a hook), so no
        tokens x tokens matrix is kept. `crop`: only the patch columns that
        hold the clip go through the model, with the position embeddings of
        those columns (how AST's authors fit shorter clips; the checkpoint
        was finetuned on 10 s, so probabilities shift a little), much faster
        on short clips."""
        features = self.input_values([audio])
        embeddings = self.model.embeddings
        full = embeddings.position_embeddings
        rows, columns = self.frequency_patches, self.time_patches
        audio_columns = int(self.token_mask(torch.tensor([len(audio)]))[0, :columns].sum())
        if crop:
            columns = audio_columns
            features = features[:, : (columns - 1) * self.time_stride + self.model.config.patch_size]
            grid = full[:, self.special_tokens:].reshape(1, rows, self.time_patches, -1)[:, :, :columns]
            embeddings.position_embeddings = torch.nn.Parameter(
                torch.cat([full[:, : self.special_tokens], grid.reshape(1, rows * columns, -1)], 1),
                requires_grad=False)
        block = self.model.layers[-1]
        caught = {}
        hook = block.attention.register_forward_pre_hook(lambda _, args: caught.setdefault("x", args[0]))
        try:
            out = self.model(features)
        finally:
            hook.remove()
            embeddings.position_embeddings = full
        attn, x = block.attention, caught["x"]
        heads = attn.num_attention_heads

        def split(t):  # [1, N, heads * dim] -> [1, heads, N, dim]
            return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

        queries = split(attn.q_proj(x[:, : self.special_tokens]))
        keys = split(attn.k_proj(x))
        weights = torch.softmax(queries @ keys.transpose(-1, -2) * attn.scaling, dim=-1)
        patches = weights.mean(dim=(1, 2))[0, self.special_tokens:]
        probabilities = torch.sigmoid(self.classifier(out.pooler_output))[0]
        return probabilities.numpy(), patches.reshape(rows, columns)[:, :audio_columns].numpy()


# ---- CLAP -------------------------------------------------------------------------
class ClapEncoder(TransformersEncoder):
    """LAION CLAP audio tower (HTS-AT) with its projection. Layers: `pooled`
    (the audio tower's pooler output) and `audio_embeds` (projected, not
    L2-normalised, the default), both clip-level. The 48 kHz input is
    featurised per item by ClapFeatureExtractor (repeat-padded to 10 s), so
    batching is padding-invariant. Loads the audio half of a full ClapModel
    checkpoint; the text tower's weights are ignored."""

    sample_rate = 48000
    window_seconds = 10.0
    padding_invariant = True
    default_dir = "clap-htsat-unfused"
    hub_id = "laion/clap-htsat-unfused"
    hub_revision = "8fa0f1c6d0433df6e97c127f64b2a1d6c0dcda8a"
    model_class = "ClapAudioModelWithProjection"
    model_types = ("clap", "clap_audio_model")
    extra_files = ("preprocessor_config.json",)

    def __init__(self, model, directory, weights):
        super().__init__(model, directory, weights)
        config = model.config
        self.feature_extractor, self.has_preprocessor = self.load_feature_extractor(
            directory, "ClapFeatureExtractor", feature_size=config.num_mel_bins,
            truncation="fusion" if config.enable_fusion else "rand_trunc")
        self.window_samples = int(self.feature_extractor.nb_max_samples)
        self.window_seconds = self.window_samples / self.sample_rate  # the extractor's max_length_s
        self.layers = [Layer("pooled", config.hidden_size), Layer("audio_embeds", config.projection_dim)]
        self.default_layer = "audio_embeds"
        self.settings = {"preprocessor_config": self.has_preprocessor,
                         "truncation": self.feature_extractor.truncation,
                         "padding": self.feature_extractor.padding}

    def _run(self, waveforms, lengths, layers):
        # cut to the window ourselves: the extractor crops longer audio at random
        lengths = lengths.clamp(max=self.window_samples)
        audio = [w[: int(n)].detach().cpu().numpy().astype(np.float64) for w, n in zip(waveforms, lengths)]
        inputs = self.feature_extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
        is_longer = inputs.get("is_longer")
        tower = self.model.audio_model(
            input_features=inputs["input_features"].to(waveforms.device),
            is_longer=None if is_longer is None else is_longer.to(waveforms.device))
        pooled = tower.pooler_output
        values = {"pooled": pooled}
        if "audio_embeds" in layers:  # == ClapAudioModelWithProjection(...).audio_embeds
            values["audio_embeds"] = self.model.audio_projection(pooled)
        result = {}
        for name in layers:
            feats = values[name][:, None, :]
            result[name] = (feats, torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device))
        return result

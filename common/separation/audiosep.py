"""`audiosep`: AudioSep (Liu et al., 2023, "Separate Anything You Describe"),
the separation network ResUNet30 conditioned on a LAION-CLAP query embedding.

The network is `common.encoders.audiosep` (its parity tests cover the
separated waveform for a given condition); the query encoder is
`common.encoders.laion_clap`. As in upstream's `pipeline.py` and
`evaluation/evaluate_esc50.py`, the whole mixture (32 kHz) goes through the
network in one pass, with the condition computed from:

- a text (`--query "dog barking"`; without one, the first of the query's
  classes): LAION-CLAP's RoBERTa text embedding;
- a reference clip (`--query-audio`, read at 32 kHz like upstream's queries):
  resampled to 48 kHz, repeated to 10 s or cut to its first 10 s, LAION-CLAP's
  HTS-AT audio embedding;
- a precomputed 512-d embedding (`--query-embedding emb.npy`), used as given.

Files, in `pretrained_models/AudioSep/` unless given: `audiosep_base_4M_steps.ckpt`
(or the HF `pytorch_model.bin`) and `music_speech_audioset_epoch_15_esc_89.98.pt`,
both from https://huggingface.co/spaces/Audio-AGI/AudioSep/tree/main/checkpoint;
the RoBERTa tokenizer (`vocab.json`, `merges.txt`) in `pretrained_models/roberta-base/`,
else in the Hugging Face cache, fetched there on the first text query when online. Upstream loads the 4M-step
checkpoint over the CLAP file with `strict=False`, so the `query_encoder.model.*`
copies stored in the AudioSep checkpoint replace the CLAP file's tensors here too.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..encoders.audiosep import CHECKPOINT_DIR, CONDITION_SIZE, N_FFT, SAMPLE_RATE, AudioSepEncoder
from ..encoders.checkpoints import local_or_fetched, read_state_dict, require_file
from ..encoders.laion_clap import CLAP_CHECKPOINT_NAME, TOKENIZER_DIR, LaionClap, roberta_tokenizer
from ..errors import UserError
from .base import MethodOption, Query, Separated, Separator
from .pipeline import resample

CHECKPOINT_URL = "https://huggingface.co/spaces/Audio-AGI/AudioSep/tree/main/checkpoint"
QUERY_ENCODER_PREFIX = "query_encoder.model."  # AudioSep's CLAP_Encoder keeps LAION's CLAP as `.model`


class QueryError(UserError):
    """A query AudioSep cannot use: none, several, or an embedding of the wrong size."""


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


class AudioSepSeparator(Separator):
    sample_rate = SAMPLE_RATE
    method_options = (
        MethodOption("checkpoint", _path, None, "AudioSep checkpoint file; none: pretrained_models/AudioSep/"
                     "audiosep_base_4M_steps.ckpt, or pytorch_model.bin there"),
        MethodOption("clap_checkpoint", _path, None, "LAION-CLAP checkpoint of the query encoder; none: "
                     f"pretrained_models/AudioSep/{CLAP_CHECKPOINT_NAME}"),
        MethodOption("tokenizer", _path, None, "folder with RoBERTa-base's vocab.json and merges.txt for text "
                     f"queries; none: pretrained_models/{TOKENIZER_DIR}/, else the Hugging Face cache "
                     "(fetched there once when online)"),
    )

    def __init__(self, network: AudioSepEncoder, query_encoder: LaionClap, checkpoint: Path,
                 clap_checkpoint: Path, tokenizer_dir: Path, device: str = "auto"):
        from ..extraction.extract import resolve_device
        self.device = resolve_device(device)  # the first GPU if there is one
        self.network = network.eval().to(self.device)
        self.query_encoder = query_encoder.eval().to(self.device)
        self.checkpoint, self.clap_checkpoint, self.tokenizer_dir = checkpoint, clap_checkpoint, tokenizer_dir

    @classmethod
    def from_options(cls, pretrained_dir: Path, checkpoint: Path | None = None, clap_checkpoint: Path | None = None,
                     tokenizer: Path | None = None, device: str = "auto") -> "AudioSepSeparator":
        path = AudioSepEncoder.locate_checkpoint(pretrained_dir, checkpoint)
        folder = Path(pretrained_dir) / CHECKPOINT_DIR
        what = "LAION-CLAP checkpoint of AudioSep's query encoder"
        clap_path = require_file(Path(clap_checkpoint), what, CHECKPOINT_URL) if clap_checkpoint else \
            local_or_fetched(folder / CLAP_CHECKPOINT_NAME, "audiosep_clap", what, CHECKPOINT_URL)
        state = read_state_dict(path)  # read once: the network's tensors and the query encoder's copies
        network = AudioSepEncoder()
        network.load_checkpoint(path, state)
        copies = {k.removeprefix(QUERY_ENCODER_PREFIX): v for k, v in state.items()
                  if k.startswith(QUERY_ENCODER_PREFIX)}
        del state
        query_encoder = LaionClap.from_checkpoint(clap_path, overrides=copies)
        return cls(network, query_encoder, path, clap_path,
                   Path(tokenizer) if tokenizer else Path(pretrained_dir) / TOKENIZER_DIR, device)

    # ------------------------------------------------------------------ queries
    def condition(self, query: Query) -> tuple[torch.Tensor, dict]:
        """The 512-d condition for `query` and a record of where it came from."""
        given = [name for name in ("text", "audio", "embedding") if getattr(query, name) is not None]
        if len(given) > 1:
            raise QueryError(f"audiosep takes one query, got {' and '.join(given)}: give only one of "
                             "--query, --query-audio, --query-embedding")
        if query.embedding is not None:
            array = np.asarray(query.embedding, dtype=np.float32)
            if array.size != CONDITION_SIZE or not np.all(np.isfinite(array)):
                raise QueryError(f"audiosep needs a finite {CONDITION_SIZE}-d query embedding (a LAION-CLAP "
                                 f"embedding), got shape {array.shape}")
            return torch.from_numpy(array.reshape(CONDITION_SIZE).copy()).to(self.device), {"query": "embedding"}
        if query.audio is not None:
            clip = np.asarray(query.audio, dtype=np.float32)
            if clip.ndim != 1 or not clip.size:
                raise QueryError(f"audiosep needs a non-empty mono query clip, got shape {clip.shape}")
            seconds = len(clip) / SAMPLE_RATE
            # upstream resamples the 32 kHz query to CLAP's 48 kHz too (with torchaudio's sinc filter)
            clip = resample(clip, SAMPLE_RATE, self.query_encoder.sample_rate)
            return self.query_encoder.audio_embedding([clip])[0], {"query": "audio", "query_seconds": seconds}
        text = query.text if query.text is not None else (query.classes[0] if query.classes else None)
        if not text or not text.strip():
            raise QueryError("audiosep needs a query: --query TEXT, --query-audio FILE or --query-embedding FILE")
        if self.query_encoder.tokenizer is None:
            self.query_encoder.tokenizer = roberta_tokenizer(self.tokenizer_dir)
        return self.query_encoder.text_embedding([text])[0], {"query": "text", "text": text}

    # ------------------------------------------------------------------ separation
    @torch.no_grad()
    def separate(self, mixture: np.ndarray, query: Query,
                 references: dict[str, np.ndarray] | None = None) -> Separated:
        condition, info = self.condition(query)
        mixture = np.asarray(mixture, dtype=np.float32)
        # the STFT's reflect padding needs more than N_FFT/2 samples: very short inputs get trailing zeros
        padded = np.pad(mixture, (0, max(0, N_FFT - len(mixture))))
        waveform = torch.from_numpy(padded)[None].to(self.device)
        target = self.network.separate(waveform, condition.to(waveform.dtype))[0, : len(mixture)]
        target = target.cpu().numpy().astype(np.float32)
        info["condition_sha1"] = hashlib.sha1(condition.cpu().numpy().astype(np.float32).tobytes()).hexdigest()
        return Separated(target=target, sources={"residual": mixture - target}, info=info)

    def config(self) -> dict:
        return {"checkpoint": self.checkpoint.name, "checkpoint_bytes": self.checkpoint.stat().st_size,
                "clap_checkpoint": self.clap_checkpoint.name,
                "clap_checkpoint_bytes": self.clap_checkpoint.stat().st_size,
                "query_encoder": self.query_encoder.describe()}

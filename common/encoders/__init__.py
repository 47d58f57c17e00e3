"""One registry of encoders. Adding one = one file in this folder and one line
here: `name: "module:Class"`. The class subclasses `common.encoders.base.Encoder`,
declares the options it takes (`options`) and has a
`from_options(pretrained_dir, **options)` classmethod. Imports are
lazy so that an encoder's dependencies are only needed when it is used."""
from __future__ import annotations

import importlib
from pathlib import Path

from .base import Encoder, Layer, check_encoder  # noqa: F401

ENCODERS: dict[str, str] = {
    "mfcc": "common.encoders.mfcc:MFCCEncoder",
    "audiosep": "common.encoders.audiosep:AudioSepEncoder",
    "panns_cnn14": "common.encoders.panns:Cnn14Encoder",
    "efficientat_mn04": "common.encoders.efficientat:EfficientATEncoder",
    "hubert": "common.encoders.transformers_models:HubertEncoder",
    "wav2vec2": "common.encoders.transformers_models:Wav2Vec2Encoder",
    "wavlm": "common.encoders.transformers_models:WavLMEncoder",
    "data2vec_audio": "common.encoders.transformers_models:Data2VecAudioEncoder",
    "whisper": "common.encoders.transformers_models:WhisperEncoder",
    "ast": "common.encoders.transformers_models:ASTEncoder",
    "clap": "common.encoders.transformers_models:ClapEncoder",
    "crepe": "common.encoders.crepe:CrepeEncoder",
    "resemblyzer": "common.encoders.resemblyzer:ResemblyzerEncoder",
}

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_pretrained_dir() -> Path:
    """Where users drop weights: `pretrained_models/` at the top of the project,
    or $AUDIO_PROBES_PRETRAINED."""
    import os
    return Path(os.environ.get("AUDIO_PROBES_PRETRAINED", PROJECT_ROOT / "pretrained_models"))


def encoder_class(name: str) -> type[Encoder]:
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; registered: {', '.join(sorted(ENCODERS))}")
    module, cls = ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_encoder(name: str, pretrained_dir: str | Path | None = None, **options) -> Encoder:
    """Instantiate a registered encoder in eval mode with frozen weights."""
    cls = encoder_class(name)
    encoder = cls.from_options(Path(pretrained_dir or default_pretrained_dir()), **cls.parse_options(options))
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder

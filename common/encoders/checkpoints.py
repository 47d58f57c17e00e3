"""Safe checkpoint reading and strict, explained loading, and where weights
come from when they are not in `pretrained_models/`.

Nothing here unpickles code: `.pt/.pth/.ckpt/.bin` files are read with
`torch.load(weights_only=True)`, `.safetensors` with safetensors, whatever
their source.

Weights not found locally are fetched once (never with --offline /
HF_HUB_OFFLINE=1): single files (`WEIGHTS`) into the cache folder, verified
against the checksum their publisher gives, or, for files of a Hugging Face
repository, into the Hugging Face cache, verified against their sha256;
Hugging Face models
(`hub_snapshot`) with `huggingface_hub` into the standard Hugging Face cache,
pinned to the commit each encoder records (`hub_revision`)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..data.fetch import (FetchError, HubFile, RemoteFile, cache_dir, failure_reason, fetch_file, fetch_hub_file,
                          offline)
from ..errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable or of another architecture."""


def require_file(path: Path, what: str, source: str) -> Path:
    """Return `path` if it exists, else raise one sentence naming the file
    expected and where the official one comes from."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: expected {path}. Download it from {source} "
                              f"and put it there (or pass --checkpoint PATH).")
    return path


def _numpy_globals() -> list:
    """numpy array reconstruction, allowed beside tensors: official PANNs
    checkpoints store a sampler state of numpy arrays next to the weights.
    Rebuilding an array runs no code; its items still go through the
    weights-only unpickler."""
    import numpy as np
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *{type(np.dtype(t)) for t in
            ("float32", "float64", "int64", "int32", "uint32", "uint8", "bool")}, core.multiarray.scalar]


def _load_tensors_only(path: Path):
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)


def read_state_dict(path: Path, wrapper_keys: Iterable[str] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from Lightning/PANNs-style
    `{'state_dict': ...}` / `{'model': ...}` dicts."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        obj = _load_tensors_only(path)
    except Exception as err:
        raise CheckpointError(
            f"{path} cannot be read as plain tensors ({type(err).__name__}: {str(err)[:200]}). "
            "It may hold pickled Python objects, which this project refuses to load because "
            "unpickling can run code; re-save its state_dict with torch.save or safetensors.") from err
    for key in wrapper_keys:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path | str,
                ignore: Iterable[str] = ()) -> None:
    """Load `state` into `module`, refusing any missing, unexpected or
    mis-shaped key (keys in `ignore` are allowed to be absent from `state`)
    with a message naming the first ones."""
    own = module.state_dict()
    ignore = set(ignore)
    missing = [k for k in own if k not in state and k not in ignore]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (first: {', '.join(unexpected[:3])})")
        if shape:
            parts.append(f"{len(shape)} shape mismatches (first: {'; '.join(shape[:3])})")
        raise CheckpointError(f"{source} does not match {type(module).__name__}: " + "; ".join(parts)
                              + ". Is it the right checkpoint for this encoder?")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


# Single-file checkpoints: where they come from and their published checksum.
AUDIOSEP_SPACE = "Audio-AGI/AudioSep"
WEIGHTS: dict[str, RemoteFile | HubFile] = {
    "efficientat_mn04": RemoteFile(
        url="https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/mn04_as_mAP_432.pt",
        filename="mn04_as_mAP_432.pt", size=4_066_513,
        # no checksum is published with the release: sha256 of the release file (../shared/pretrained copy)
        checksum="sha256:899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"),
    # AudioSet's 527 label names in the model's output order, as EfficientAT
    # ships them (metadata/ at a pinned commit); sha256 of the
    # ../shared/pretrained copy. Fetched beside the weights, for tag().
    "efficientat_mn04_labels": RemoteFile(
        url="https://raw.githubusercontent.com/fschmid56/EfficientAT/03cff212f7cd6e726a33c7d320ad84aeca568e60/"
            "metadata/class_labels_indices.csv",
        filename="class_labels_indices.csv", size=14_675,
        checksum="sha256:cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429"),
    "panns_cnn14": RemoteFile(
        url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth", filename="Cnn14_mAP=0.431.pth",
        checksum="md5:541141fa2ee191a88f24a3219fff024e"),  # Zenodo record 3987831 publishes md5 only
    # The AudioSep space publishes no checksum beside its files, and neither
    # its commit hash nor the files' sha256 could be found in public sources:
    # the pin is the sha256 the hub publishes for each LFS file at fetch time
    # (trust on first use of the hub's own checksum); the resolved commit and
    # the sha256 are recorded with the features.
    "audiosep": HubFile(AUDIOSEP_SPACE, "checkpoint/audiosep_base_4M_steps.ckpt", repo_type="space"),
    "audiosep_clap": HubFile(AUDIOSEP_SPACE, "checkpoint/music_speech_audioset_epoch_15_esc_89.98.pt",
                             repo_type="space"),
}


def local_or_fetched(local: Path, weights: str, what: str, source: str) -> Path:
    """`local` if it exists, else the verified copy of `WEIGHTS[weights]`,
    fetched once: a single file into the cache folder, a Hugging Face file
    into the Hugging Face cache. Offline or unverifiable: a one-line
    CheckpointError naming the file expected, the URL and `source`."""
    local = Path(local)
    if local.exists():
        return local
    remote = WEIGHTS[weights]
    try:
        if isinstance(remote, HubFile):
            return fetch_hub_file(remote, by_hand=f"{local.parent}/")
        return fetch_file(remote, cache_dir() / weights, by_hand=f"{local.parent}/")
    except FetchError as err:
        if offline() or getattr(remote, "checksum", "") is None:
            why = "downloads are off (--offline or HF_HUB_OFFLINE=1)" if offline() else "no checksum is recorded"
            raise CheckpointError(f"{what} not found: expected {local}, and {why}. Download it from {remote.url} "
                                  f"({source}) and put it there (or pass --checkpoint PATH).") from err
        raise CheckpointError(str(err)) from err


HUB_FILES = ("config.json", "preprocessor_config.json")
# weights in order of preference: safetensors, then pytorch_model.bin
HUB_WEIGHTS = (("model.safetensors", "model.safetensors.index.json", "model-*.safetensors"),
               ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"))


def _hub_folder(repo_id: str, revision: str | None, patterns: list[str], local_only: bool) -> Path | None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError
    try:
        folder = Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                                        local_files_only=local_only))
    except LocalEntryNotFoundError:
        if local_only:
            return None
        raise
    has_weights = any(any(folder.glob(pattern)) for pattern in patterns if pattern not in HUB_FILES)
    return folder if (folder / "config.json").is_file() and has_weights else None


def hub_snapshot(repo_id: str, revision: str | None, by_hand: Path) -> Path:
    """The folder of `repo_id` at `revision` in the Hugging Face cache holding
    config.json, the preprocessor config and the weights (only those files are
    fetched). The cache is tried first, so nothing goes over the network once
    the files are there; offline, a missing snapshot is a one-line error."""
    kinds = [[*HUB_FILES, *weights] for weights in HUB_WEIGHTS]
    for patterns in kinds:
        folder = _hub_folder(repo_id, revision, patterns, local_only=True)
        if folder is not None:
            return folder
    url = f"https://huggingface.co/{repo_id}/tree/{revision or 'main'}"
    if offline():
        raise CheckpointError(f"{repo_id} (revision {revision or 'main'}) is neither in {by_hand}/ nor in the "
                              "Hugging Face cache, and downloads are off (--offline or HF_HUB_OFFLINE=1): download "
                              f"config.json, model.safetensors or pytorch_model.bin and preprocessor_config.json "
                              f"from {url} into {by_hand}/")
    from huggingface_hub import constants
    endpoint = f"{constants.ENDPOINT}/{repo_id}"
    try:
        for patterns in kinds:
            folder = _hub_folder(repo_id, revision, patterns, local_only=False)
            if folder is not None:
                return folder
    except Exception as err:  # network, unknown repository or revision
        raise CheckpointError(f"cannot fetch {repo_id} (revision {revision or 'main'}) from the Hugging Face hub "
                              f"({failure_reason(err, endpoint)}): run again, or download config.json, "
                              f"model.safetensors or pytorch_model.bin and preprocessor_config.json from {url} "
                              f"into {by_hand}/") from err
    raise CheckpointError(f"{repo_id} (revision {revision}) has neither model.safetensors nor pytorch_model.bin")

"""Downloads, done once: official files verified against a recorded checksum,
resumed after an interruption, and archives unpacked safely into a data root.

Datasets declare their files as data next to their readers (a
`DatasetDownload`: URL, file name, checksum, size, licence line, what each
archive unpacks to); encoder weights declare theirs in
`common.encoders.checkpoints`. Everything that talks to the network is here:

- `fetch_file`: pooch (`retrieve` with the known hash) and a downloader that
  continues a `.part` file with an HTTP Range request, because pooch's own
  `HTTPDownloader` starts again from zero (datasets are gigabytes). A file is
  moved into place only after its checksum matched; a mismatch deletes the
  partial download, so the next attempt starts afresh.
- `fetch_dataset`: prints the licence, skips a dataset already complete (its
  reader says so, or every archive was unpacked before), fetches the missing
  archives into `<data root>/.downloads/`, unpacks each into a temporary folder
  inside the data root (refusing members that point outside it: `..`, absolute
  paths, links) and only then moves the files into place.

- `fetch_hub_file`: one file of a Hugging Face repository (model or space)
  with huggingface_hub into the standard Hugging Face cache, verified against
  the SHA-256 recorded for it or, where none is recorded, the one the hub
  publishes for the LFS file (trust on first use of the hub's own checksum).

Environment: `AUDIO_PROBES_OFFLINE=1` (or `HF_HUB_OFFLINE=1`, or `--offline`)
fetches nothing; `AUDIO_PROBES_CACHE` is the weights cache (`--cache-dir`);
`AUDIO_PROBES_MIRROR=http://host/base` fetches every URL from
`<base>/<host>/<path>` instead (mirrors, and the tests' local server).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import urlsplit

from ..errors import UserError
from ..files import atomic_path
from ..options import TRUE_WORDS

OFFLINE_ENV = "AUDIO_PROBES_OFFLINE"
CACHE_ENV = "AUDIO_PROBES_CACHE"
MIRROR_ENV = "AUDIO_PROBES_MIRROR"
WORK_DIR = ".downloads"  # under a data root: archives in transit and the record of what was unpacked


class FetchError(UserError):
    """A download that failed, was refused, or is not allowed (offline)."""


class ChecksumError(FetchError):
    """A downloaded file whose checksum differs from the recorded one."""


class UnsafeArchiveError(FetchError):
    """An archive with a member that would land outside its target folder."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str                 # name on disk
    checksum: str | None          # "sha256:<hex>" or "md5:<hex>" as published; None: nothing published
    size: int | None = None       # bytes, where published
    unpack_to: str | None = None  # archives: folder under the data root to unpack into ("" = the root itself);
    #                               None: a plain file, placed in the data root as it is
    provides: str = ""            # what it puts under the data root (a folder or file), for messages and checks


@dataclass(frozen=True)
class DatasetDownload:
    name: str                     # e.g. "ESC-50", "speech_commands_v0.01"
    licence: str                  # one line, printed before fetching
    files: tuple[RemoteFile, ...]
    root: str = ""                # folder under the data root that the task's reader reads


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face repository: fetched with huggingface_hub
    into the standard Hugging Face cache (shared with other tools)."""
    repo_id: str                  # e.g. "Audio-AGI/AudioSep"
    path: str                     # path in the repository, e.g. "checkpoint/x.ckpt"
    repo_type: str = "model"      # "model", "space" or "dataset"
    revision: str | None = None   # a commit hash; None: the hub's `main` at fetch time
    sha256: str | None = None     # None: the LFS sha256 the hub publishes at fetch time

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def url(self) -> str:
        kind = {"space": "spaces/", "dataset": "datasets/"}.get(self.repo_type, "")
        return f"https://huggingface.co/{kind}{self.repo_id}/resolve/{self.revision or 'main'}/{self.path}"


def _truthy(value: str | None) -> bool:
    """An environment switch: on for the yes-words of `options.boolean`, off for anything else."""
    return str(value or "").strip().lower() in TRUE_WORDS


def offline() -> bool:
    """True when nothing may be downloaded (--offline, AUDIO_PROBES_OFFLINE or HF_HUB_OFFLINE)."""
    return _truthy(os.environ.get(OFFLINE_ENV)) or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def cache_dir() -> Path:
    """Where downloaded weights live: --cache-dir / $AUDIO_PROBES_CACHE, else the
    platform's user cache (~/.cache/audio-encoder-probes on Linux)."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    import pooch
    return Path(pooch.os_cache("audio-encoder-probes"))


def mirrored(url: str) -> str:
    """`url`, or its copy under $AUDIO_PROBES_MIRROR (`<mirror>/<host>/<path>`)."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    parts = urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


_UNRESOLVED = ("NameResolution", "Name or service not known", "Temporary failure in name resolution",
               "nodename nor servname", "getaddrinfo failed", "No address associated")


def failure_reason(err: BaseException, url: str) -> str:
    """Why a download failed, in a few words: a host that cannot be reached by
    its name, else the error's own first 200 characters."""
    host = urlsplit(url).hostname or url
    text = " ".join(f"{type(err).__name__}: {err}".split())
    if any(key in text for key in _UNRESOLVED):
        return f"{host} cannot be reached: its name does not resolve (no network here, or a proxy is needed)"
    if any(key in text for key in ("ConnectError", "ConnectionError", "Connection refused")):
        return f"{host} cannot be reached ({type(err).__name__})"
    return text[:200]


class ResumingDownloader:
    """A pooch downloader that keeps what arrived in `<file>.part` and asks
    only for the rest next time (HTTP Range); a server that ignores the range
    gets a fresh start. Shows a progress bar with sizes."""

    def __init__(self, partial: Path, label: str, timeout: float = 60.0):
        self.partial = Path(partial)
        self.label = label
        self.timeout = timeout

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False):
        import requests
        from tqdm import tqdm

        have = self.partial.stat().st_size if self.partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        response = requests.get(url, headers=headers, stream=True, timeout=self.timeout)
        if response.status_code == 416:  # the partial file is not a prefix of this one: start again
            response.close()
            self.partial.unlink()
            have, headers = 0, {}
            response = requests.get(url, stream=True, timeout=self.timeout)
        with response:
            response.raise_for_status()
            if response.status_code != 206:
                have = 0
            length = int(response.headers.get("content-length") or 0)
            total = have + length if length else None
            with open(self.partial, "ab" if have else "wb") as out, \
                    tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=self.label, file=sys.stderr, leave=False, disable=None) as bar:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(self.partial, output_file)


def _matches(path: Path, checksum: str) -> bool:
    import pooch
    return pooch.hashes.hash_matches(str(path), checksum)


def fetch_file(remote: RemoteFile, folder: Path, by_hand: str | None = None, verified_only: bool = True,
               manual: str | None = None) -> Path:
    """`folder/remote.filename`, downloaded once and verified against the
    recorded checksum. Offline only a file already there (and verified) is
    used; otherwise a one-line FetchError says what to download from where
    (`by_hand`: the folder to put it in; `manual`: the whole instruction, when
    it is more than that). A file with no published checksum is refused
    when `verified_only` (weights), fetched with a warning otherwise (dataset
    archives, whose readers then check item counts)."""
    folder = Path(folder)
    target = folder / remote.filename
    where = by_hand or f"{folder}/"
    manual = manual or f"download {remote.url} and put it in {where}"
    if remote.checksum is None and verified_only:
        raise FetchError(f"no published checksum is recorded for {remote.filename}, so it is not fetched "
                         f"unverified: {manual}")
    if offline():
        if target.is_file() and (remote.checksum is None or _matches(target, remote.checksum)):
            return target
        raise FetchError(f"{remote.filename} is not in {folder}/ and downloads are off (--offline or "
                         f"HF_HUB_OFFLINE=1): {manual}")
    import pooch
    import requests
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fetching {remote.filename} ({_size(remote.size)}) from {remote.url}", file=sys.stderr)
    if remote.checksum is None:
        print(f"warning: no checksum is published for {remote.filename}; it cannot be verified", file=sys.stderr)
    downloader = ResumingDownloader(folder / (remote.filename + ".part"), remote.filename)
    pooch.get_logger().setLevel("WARNING")  # the line above already says what is fetched
    try:
        pooch.retrieve(mirrored(remote.url), known_hash=remote.checksum, fname=remote.filename, path=folder,
                       downloader=downloader)
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        raise ChecksumError(f"{remote.filename} from {mirrored(remote.url)} does not match its recorded checksum "
                            f"{remote.checksum} (corrupted in transit, or changed upstream); it was deleted: run "
                            f"again to download it afresh, or {manual}") from err
    except (requests.RequestException, OSError) as err:
        kept = downloader.partial
        resume = f" ({_size(kept.stat().st_size)} kept in {kept}, resumed next time)" if kept.exists() else ""
        raise FetchError(f"downloading {remote.filename} from {mirrored(remote.url)} failed "
                         f"({failure_reason(err, mirrored(remote.url))}){resume}; run again to continue, or "
                         f"{manual}") from err
    return target


# --------------------------------------------------------------------------- Hugging Face files
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _cached_blob(path: Path) -> Path:
    """The blob a Hugging Face cache entry points to (the entry itself outside a cache)."""
    return Path(os.path.realpath(path))


def hub_cache_record(path: str | Path) -> dict:
    """What a file fetched by `fetch_hub_file` is, read from the cache layout
    (`snapshots/<commit>/<path>` -> `blobs/<sha256>`): {"revision", "sha256"};
    {} for a file outside the Hugging Face cache."""
    parts = Path(path).parts
    blob = _cached_blob(Path(path)).name
    if "snapshots" not in parts[:-2] or not SHA256_HEX.fullmatch(blob):
        return {}
    snapshots = len(parts) - 1 - parts[::-1].index("snapshots")  # the last one: the cache's own
    return {"revision": parts[snapshots + 1], "sha256": blob}


def _discard_cached(path: Path) -> None:
    """Remove a cache entry and its blob, so nothing of a refused file stays in use."""
    blob = _cached_blob(path)
    Path(path).unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def fetch_hub_file(remote: HubFile, by_hand: str) -> Path:
    """`remote` in the Hugging Face cache, fetched there once and verified.
    The cache is tried first (no network call once the file is there; an LFS
    blob there is named by its sha256, which must be the recorded one). Online,
    the hub's metadata gives the LFS sha256 it publishes for `remote.revision`;
    the file is downloaded and its sha256 computed: a mismatch (also: the
    revision moved in between) deletes the file and raises ChecksumError. `by_hand`: the folder
    to put the file in instead, for messages."""
    import huggingface_hub
    import pooch
    from huggingface_hub.errors import LocalEntryNotFoundError
    where = {"repo_id": remote.repo_id, "filename": remote.path, "repo_type": remote.repo_type}
    try:
        cached = Path(huggingface_hub.hf_hub_download(**where, revision=remote.revision, local_files_only=True))
    except LocalEntryNotFoundError:
        cached = None
    if cached is not None:
        blob = _cached_blob(cached).name
        if SHA256_HEX.fullmatch(blob) and blob == (remote.sha256 or blob):
            return cached
    if offline():
        raise FetchError(f"{remote.filename} is not in {by_hand} nor in the Hugging Face cache and downloads are "
                         f"off (--offline or HF_HUB_OFFLINE=1): download {remote.url} and put it there")
    url = huggingface_hub.hf_hub_url(**where, revision=remote.revision)
    try:
        meta = huggingface_hub.get_hf_file_metadata(url)
    except Exception as err:  # network, unknown repository, file or revision
        raise FetchError(f"cannot fetch {remote.filename} from {remote.url} ({failure_reason(err, url)}); run "
                         f"again, or download it and put it in {by_hand}") from err
    published = str(meta.etag or "").strip('"').lower()
    if not SHA256_HEX.fullmatch(published):  # not an LFS file: the hub publishes no sha256 for it
        raise FetchError(f"the hub publishes no sha256 for {remote.filename}, so it is not fetched unverified: "
                         f"download {remote.url} and put it in {by_hand}")
    expected = remote.sha256 or published
    if published != expected:
        raise ChecksumError(f"the hub now publishes sha256 {published} for {remote.filename}, not the recorded "
                            f"{expected} (changed upstream), so it is not fetched: download the file you trust "
                            f"and put it in {by_hand}")
    print(f"fetching {remote.filename} ({_size(meta.size)}) from {remote.url} at commit {meta.commit_hash}",
          file=sys.stderr)
    try:  # by the same revision, so that the cache's refs/main is written for the next (offline) run
        path = Path(huggingface_hub.hf_hub_download(**where, revision=remote.revision))
    except Exception as err:
        raise FetchError(f"downloading {remote.filename} from {remote.url} failed ({failure_reason(err, url)}); "
                         f"run again to continue, or download it and put it in {by_hand}") from err
    actual = pooch.file_hash(str(path), alg="sha256")
    if actual != expected:
        _discard_cached(path)
        raise ChecksumError(f"{remote.filename} from {remote.url} has sha256 {actual}, not the published {expected} "
                            f"(corrupted in transit, or changed upstream); it was deleted: run again to download it "
                            f"afresh, or download it by hand and put it in {by_hand}")
    return path


# --------------------------------------------------------------------------- archives
def _check_member_name(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    drive = bool(path.parts) and ":" in path.parts[0]  # C:/... on Windows
    if path.is_absolute() or ".." in path.parts or drive:
        raise UnsafeArchiveError(f"archive member {name!r} points outside the target folder; the archive is refused")


def _extract(archive: Path, into: Path) -> None:
    """Unpack `archive` into the empty folder `into`, refusing any member
    that would land outside it."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member_name(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchiveError(f"archive member {info.filename!r} is a symbolic link; the archive "
                                             "is refused")
            zf.extractall(into, members)
        return
    if not hasattr(tarfile, "data_filter"):
        raise FetchError(f"unpacking {archive.name} safely needs tarfile's data filter (Python 3.10.12, 3.11.4, "
                         f"3.12 or newer): upgrade Python, or unpack {archive} by hand")
    try:
        with tarfile.open(archive) as tf:
            for member in tf:  # one pass: names checked as they come
                _check_member_name(member.name)
                # the "data" filter refuses links leaving the folder and
                # devices, and drops set-uid bits
                tf.extract(member, into, filter="data")
    except tarfile.FilterError as err:
        raise UnsafeArchiveError(f"{archive.name}: {err}; the archive is refused") from err
    except tarfile.TarError as err:
        raise FetchError(f"{archive.name} cannot be unpacked ({err}); delete it and run again") from err


def _merge(source: Path, target: Path) -> None:
    """Move the tree `source` into `target`, replacing files of the same name
    (a partial dataset is completed, the archive's files win)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return
    if source.is_dir() and target.is_dir():
        for child in source.iterdir():
            _merge(child, target / child.name)
        return
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(source, target)


def unpack(archive: Path, target: Path, scratch: Path) -> None:
    """Unpack `archive` into `target`: first into a temporary folder under
    `scratch` (on the same file system), then moved into place, so a refused
    or broken archive leaves nothing half-unpacked in `target`."""
    scratch.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"unpack-{archive.name}-", dir=scratch))
    try:
        _extract(archive, staging)
        for child in staging.iterdir():
            _merge(child, target / child.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    with atomic_path(target) as tmp:
        write(tmp)


def _stamp(work: Path, remote: RemoteFile) -> Path:
    return work / f"{remote.filename}.done"


def fetch_dataset(download: DatasetDownload, data_root: str | Path,
                  is_complete: Callable[[Path], bool] | None = None) -> Path:
    """Make `download` present under `data_root` and return the folder its
    reader reads. A dataset the reader finds complete, or whose archives were
    all unpacked before, is not fetched again; otherwise each archive not yet
    unpacked is fetched, verified and unpacked (completing a partial copy)."""
    data_root = Path(data_root).expanduser().resolve()
    root = data_root / download.root
    work = data_root / WORK_DIR
    # done: unpacked before (stamped) and still there
    pending = [f for f in download.files if not (_stamp(work, f).exists() and (data_root / f.provides).exists())]
    if not pending:
        print(f"{download.name}: already downloaded into {root}")
        return root
    if is_complete is not None and all((data_root / f.provides).exists() for f in download.files):
        from . import DatasetError  # here: the readers' modules import this one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reader's partial-download warning is our answer here
            try:
                complete = is_complete(root)
            except (UserError, DatasetError, OSError):  # unreadable as it is: fetch it
                complete = False
        if complete:
            print(f"{download.name}: complete in {root}, nothing to fetch")
            return root
    print(f"{download.name}: licence: {download.licence}")
    sizes = [f.size for f in pending]
    print(f"{download.name}: fetching {len(pending)} file(s), {_size(None if None in sizes else sum(sizes))}, "
          f"into {data_root}")
    for remote in pending:
        into = data_root / (remote.unpack_to or "")
        manual = (f"download {remote.url} and put it in {work}/ (it is checked and unpacked at the next run), "
                  f"or unpack it yourself into {into}/ so that {data_root / remote.provides} exists"
                  if remote.unpack_to is not None else f"download {remote.url} and put it in {data_root}/")
        path = fetch_file(remote, work, verified_only=False, manual=manual)
        if remote.unpack_to is None:
            _write_atomically(data_root / remote.filename, lambda tmp: shutil.copyfile(path, tmp))
        else:
            print(f"{download.name}: unpacking {remote.filename} into {data_root / remote.unpack_to}")
            unpack(path, data_root / remote.unpack_to, work)
        _write_atomically(_stamp(work, remote), lambda tmp: tmp.write_text(f"{remote.url} {remote.checksum}\n"))
        path.unlink()  # the archive is not needed once unpacked (the stamp remembers)
    return root


def fetch_task_data(task, data_root: str | Path | None, name: str | None = None) -> Path:
    """Fetch the dataset of `task` (its first declared download, or the one
    called `name`) into `data_root`; the folder to hand to its reader."""
    if not task.downloads:
        raise FetchError(f"{task.title} declares no downloads; download it by hand from {task.download}")
    if data_root is None:
        raise FetchError(f"--download needs --data-root DIR (or ${task.data_env}): the folder that the "
                         f"{task.title} files are downloaded into")
    choices = {d.name: d for d in task.downloads}
    if name and name not in choices:
        raise FetchError(f"{task.title} has no download {name!r}; choose from {', '.join(choices)}")
    download = choices[name] if name else task.downloads[0]
    return fetch_dataset(download, data_root, is_complete=lambda root: task.read(root).complete)


def add_fetch_options(parser, downloads: tuple[DatasetDownload, ...] | None = None) -> None:
    """--download (datasets; a NAME picks one of `downloads`), --offline,
    --cache-dir and --revision, shared by the entry points."""
    if downloads is not None:
        names = ", ".join(d.name for d in downloads)
        parser.add_argument(
            "--download", nargs="?", const="", default=None, metavar="NAME",
            help="first fetch the dataset's official archives into --data-root (verified against published "
                 "checksums, resumable, licence printed; nothing is fetched when the dataset is already "
                 f"complete there). NAME picks one of: {names} (default: the first)")
    parser.add_argument("--offline", action="store_true",
                        help="download nothing, not even missing encoder weights (also: HF_HUB_OFFLINE=1); a "
                             "missing file is reported with its URL and the folder to put it in")
    parser.add_argument("--cache-dir", help=f"where downloaded encoder weights are kept (also: ${CACHE_ENV}; "
                                            "default: the user cache, ~/.cache/audio-encoder-probes on Linux; "
                                            "Hugging Face models use the standard Hugging Face cache)")
    parser.add_argument("--revision", help="Hugging Face encoders: the model repository revision (a commit hash, "
                                           "branch or tag) to fetch instead of the pinned commit")


def apply_fetch_options(args, encoder_options: dict) -> None:
    """Make --offline and --cache-dir visible to every later step (decoding
    workers, torchrun ranks), and --revision an encoder option."""
    if args.offline:
        os.environ[OFFLINE_ENV] = "1"
    if args.cache_dir:
        os.environ[CACHE_ENV] = str(Path(args.cache_dir).expanduser().resolve())
    if args.revision:
        encoder_options["revision"] = args.revision

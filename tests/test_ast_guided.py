"""The AST-guided separator on a tiny randomly initialised AST with the real
patch geometry (128 mels, 1024 frames, 16x16 patches, stride 10: a 12 x 101
grid) and 527 AudioSet outputs; the classifier bias decides the top class."""
from __future__ import annotations

import http.server
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers")

from common.errors import UserError  # noqa: E402
from common.separation import Query, Separated, build_separator, separator_class  # noqa: E402
from common.separation.ast_guided import (DANGER_IDS, HELP_IDS, WARNING_IDS,  # noqa: E402
                                          EventSinkWarning, category, esc50_audioset_labels)

SR = 16000
DOG, SIREN = 74, 396
NAMES = {0: "Speech", 14: "Screaming", 23: "Baby cry, infant cry", DOG: "Dog", 75: "Bark", 288: "Water",
         SIREN: "Siren", 500: "Silence"}


def tiny_ast(directory: Path, top: int) -> Path:
    cfg = transformers.ASTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                 num_labels=527, id2label={i: NAMES.get(i, f"class {i}") for i in range(527)})
    torch.manual_seed(0)
    model = transformers.ASTForAudioClassification(cfg).eval()
    with torch.no_grad():  # the top class is `top` whatever the input
        model.classifier.dense.weight.mul_(0.01)
        model.classifier.dense.bias.zero_()
        model.classifier.dense.bias[top] = 5.0
    model.save_pretrained(directory)
    transformers.ASTFeatureExtractor().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pretrained")
    tiny_ast(root / "ast-finetuned-audioset-10-10-0.4593", top=SIREN)
    tiny_ast(root / "ast-dog", top=DOG)
    return root


def mixture(seconds: float = 5.0, seed: int = 0) -> np.ndarray:
    """A 1 kHz tone burst (1-2 s), a 3 kHz one (3-4.5 s) and faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.5 * np.sin(2 * np.pi * 1000 * t) * ((t > 1) & (t < 2))
    x += 0.3 * np.sin(2 * np.pi * 3000 * t) * ((t > 3) & (t < 4.5))
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_tag_attention_is_the_last_blocks_special_token_attention(pretrained):
    """ASTTagger recomputes only the special tokens' queries; it must equal
    what transformers' eager attention returns for the last block."""
    from common.encoders.transformers_models import ASTTagger
    tagger = ASTTagger.from_options(pretrained)
    audio = mixture(3.0)
    probs, attention = tagger.tag(audio)
    assert (tagger.frequency_patches, tagger.time_patches) == (12, 101)
    assert attention.shape == (12, 30)  # 298 fbank frames: the columns after the 30th see only padding
    model = transformers.ASTForAudioClassification.from_pretrained(
        pretrained / "ast-finetuned-audioset-10-10-0.4593", attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(tagger.input_values([audio]), output_attentions=True)
    expected = out.attentions[-1][0, :, :2, 2:].mean(dim=(0, 1)).reshape(12, 101)[:, :30]
    np.testing.assert_allclose(attention, expected.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(probs, torch.sigmoid(out.logits[0]).numpy(), rtol=1e-5)
    assert int(probs.argmax()) == SIREN


def test_cropped_tagging_is_exact_for_a_full_window_and_shorter_otherwise(pretrained):
    from common.encoders.transformers_models import ASTTagger
    tagger = ASTTagger.from_options(pretrained)
    full = mixture(10.24)
    (p1, a1), (p2, a2) = tagger.tag(full), tagger.tag(full, crop=True)
    np.testing.assert_allclose(p1, p2, rtol=1e-5)
    np.testing.assert_allclose(a1, a2, rtol=1e-4, atol=1e-7)
    probs, attention = tagger.tag(full[: int(4.096 * SR)], crop=True)
    assert attention.shape == (12, 41)  # 408 fbank frames: 41 patch columns (the last partly padding), not 101
    assert np.isclose(attention.sum(), attention.sum(1).sum()) and attention.min() >= 0
    # the model is left as it was
    assert tagger.model.embeddings.position_embeddings.shape[1] == 2 + 12 * 101
    sep = build_separator("ast_guided", pretrained, max_passes=1, min_eratio=0.0, ast_crop=True)
    out = sep.separate(mixture(), Query())
    assert out.info["ast_calls"] == 1
    np.testing.assert_allclose(sum(out.sources.values()), mixture(), atol=1e-5)


def test_passes_energy_identity_and_ast_calls(pretrained):
    sep = build_separator("ast_guided", pretrained, max_passes=3, min_eratio=0.0)
    mix = mixture()
    out = sep.separate(mix, Query(text="siren"))
    info = out.info
    assert info["passes"] == len(info["events"]) == info["ast_calls"] == 3
    assert sorted(out.sources) == ["00_separated", "01_separated", "02_separated", "03_residual"]
    total = sum(out.sources.values())
    np.testing.assert_allclose(total, mix, atol=1e-5)
    assert info["energy"]["max_abs_error"] < 1e-5
    assert info["energy"]["reconstructed_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert all(len(s) == len(mix) and s.dtype == np.float32 for s in out.sources.values())
    # the first pass takes the loudest burst, the 1 kHz tone: most of its energy, little of the rest
    first = out.sources["00_separated"]
    assert np.sum(first ** 2) > 0.3 * np.sum(mix ** 2)
    assert np.sum(first[int(3.2 * SR):int(4.3 * SR)] ** 2) < 0.2 * np.sum(first ** 2)
    event = info["events"][0]
    assert event["label"] == "Siren" and event["audioset_id"] == SIREN and event["category"] == "Danger"
    assert 0.8 <= event["start"] < event["end"] <= 2.3
    # energies fall pass after pass, as the residual shrinks
    ratios = [e["residual_energy_ratio"] for e in info["events"]]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] < 1.0
    assert info["target_pass"] == 0 and info["target_rule"] == "top label matches the query"
    np.testing.assert_array_equal(out.target, out.sources["00_separated"])


def test_stopping_rules(pretrained):
    mix = mixture()
    sep = build_separator("ast_guided", pretrained, max_passes=5, min_eratio=0.95)
    info = sep.separate(mix, Query()).info
    assert info["passes"] == info["ast_calls"] == 1 and info["stopped"] == "min_eratio"
    assert info["events"][0]["residual_energy_ratio"] < 0.95
    info = build_separator("ast_guided", pretrained, max_passes=2, min_eratio=0.0).separate(mix, Query()).info
    assert info["passes"] == 2 and info["stopped"] == "max_passes"
    silent = build_separator("ast_guided", pretrained).separate(np.zeros(SR, np.float32), Query(text="dog"))
    assert silent.info["passes"] == silent.info["ast_calls"] == 0 and silent.info["target_pass"] is None
    assert list(silent.sources) == ["00_residual"] and not silent.target.any()


def test_weak_sounds_get_the_conservative_mask(pretrained):
    mix = mixture()
    strict = build_separator("ast_guided", pretrained, max_passes=1, weak_eratio=1.0).separate(mix, Query())
    loose = build_separator("ast_guided", pretrained, max_passes=1, weak_eratio=0.0).separate(mix, Query())
    assert strict.info["events"][0]["strategy"] == "conservative"
    assert loose.info["events"][0]["strategy"] == "aggressive"
    assert np.sum(strict.target ** 2) < np.sum(loose.target ** 2)


def test_categories():
    assert {category(i) for i in DANGER_IDS} == {"Danger"}
    assert {category(i) for i in HELP_IDS} == {"Help"}
    assert {category(i) for i in WARNING_IDS} == {"Warning"}
    assert category(0) == category(526) == "Other"
    assert not (DANGER_IDS & HELP_IDS or DANGER_IDS & WARNING_IDS or HELP_IDS & WARNING_IDS)


def test_category_names_follow_the_audioset_ontology(shared_dir):
    """The ids are indices of AudioSet's class_labels_indices (the order of the
    checkpoint's id2label); the names the README lists are checked here."""
    labels = pd.read_csv(shared_dir / "pretrained/efficientat_mn04/class_labels_indices.csv")
    names = dict(zip(labels["index"], labels["display_name"]))
    assert names[SIREN] == "Siren" and names[23] == "Baby cry, infant cry" and names[288] == "Water"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for i in sorted(DANGER_IDS | HELP_IDS | WARNING_IDS):
        assert f"{i} {names[i]}" in readme, f"README does not list AudioSet id {i} ({names[i]})"
    table = esc50_audioset_labels()
    assert len(table) == 50
    unknown = {n for group in table.values() for n in group} - set(names.values())
    assert not unknown, f"not AudioSet labels: {unknown}"


def test_target_is_the_pass_matching_the_query(pretrained):
    sep = build_separator("ast_guided", pretrained, checkpoint="ast-dog", max_passes=2, min_eratio=0.0)
    out = sep.separate(mixture(), Query(text="dog"))  # ESC-50 "dog" -> AudioSet Dog, Bark
    assert out.info["events"][0]["label"] == "Dog" and out.info["target_pass"] == 0
    # no pass is a siren: the pass giving Siren the highest probability
    out = sep.separate(mixture(), Query(text="siren"))
    assert out.info["target_rule"] == "highest probability of the query's labels"
    assert out.info["target_pass"] in (0, 1)
    out = sep.separate(mixture(), Query(text="something else"))
    assert out.info["target_pass"] == 0 and out.info["target_rule"].startswith("first pass")


def test_options_are_checked(pretrained):
    with pytest.raises(UserError, match="max_passes"):
        build_separator("ast_guided", pretrained, max_passes=0)
    with pytest.raises(UserError, match="unknown option"):
        build_separator("ast_guided", pretrained, passes=2)
    names = [o.name for o in separator_class("ast_guided").method_options]
    assert {"max_passes", "min_eratio", "debug", "backend_url", "mask_center", "mask_slope"} <= set(names)


def test_events_json_and_debug_figures(pretrained, tmp_path):
    sep = build_separator("ast_guided", pretrained, max_passes=2, min_eratio=0.0, debug=True)
    out = sep.separate(mixture(), Query(text="siren"))
    out = Separated(target=out.target, sources=dict(out.sources), info=dict(out.info))  # as the pipeline does
    written = sep.write_extras(tmp_path, out, 44100)
    record = json.loads((tmp_path / "events.json").read_text())
    assert record["events"] == json.loads(json.dumps(out.info["events"]))
    assert record["ast_calls"] == 2 and record["energy"]["reconstructed_ratio"] == pytest.approx(1.0)
    pngs = sorted(tmp_path.glob("debug_pass_*.png"))
    assert [p.name for p in pngs] == ["debug_pass_00.png", "debug_pass_01.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20000 for p in pngs)
    assert set(written) == {tmp_path / "events.json", *pngs}
    quiet = tmp_path / "quiet"
    plain = build_separator("ast_guided", pretrained, max_passes=1)
    plain.write_extras(quiet, plain.separate(mixture(), Query()), 16000)
    assert [p.name for p in quiet.iterdir()] == ["events.json"]


class _Sink:
    """A 127.0.0.1 HTTP server answering every POST with `status`, recording the bodies."""

    def __init__(self, status: int):
        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/sound-events/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_event_sink_down_then_up(pretrained, tmp_path):
    mix = mixture()
    with _Sink(500) as down:
        sep = build_separator("ast_guided", pretrained, max_passes=2, min_eratio=0.0, backend_url=down.url,
                              backend_retries=1, backend_timeout=1.0)
        out = sep.separate(mix, Query())
        with pytest.warns(EventSinkWarning, match="2 of 2 events not delivered"):
            sep.write_extras(tmp_path / "down", out, SR)
    assert len(down.bodies) == 4  # two events, one retry each
    assert (tmp_path / "down" / "events.json").is_file()
    with _Sink(200) as up:
        sep = build_separator("ast_guided", pretrained, max_passes=2, min_eratio=0.0, backend_url=up.url)
        out = sep.separate(mix, Query())
        with warnings.catch_warnings():
            warnings.simplefilter("error", EventSinkWarning)
            sep.write_extras(tmp_path / "up", out, SR)
    assert [b["pass"] for b in up.bodies] == [0, 1]
    assert up.bodies[0]["label"] == "Siren" and up.bodies[0]["category"] == "Danger"
    assert up.bodies[0]["output_dir"] == str(tmp_path / "up")


def test_event_sink_unreachable_or_off(pretrained, tmp_path, monkeypatch):
    with _Sink(200) as sink:
        port = sink.server.server_port
    # nothing listens on that port any more: refused, reported, files kept
    sep = build_separator("ast_guided", pretrained, max_passes=1, backend_url=f"http://127.0.0.1:{port}/x",
                          backend_retries=0)
    with pytest.warns(EventSinkWarning, match="1 of 1 events"):
        sep.write_extras(tmp_path, sep.separate(mixture(), Query()), SR)
    assert (tmp_path / "events.json").is_file()
    # off by default: no request is even attempted
    attempts = []
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: attempts.append(a))
    sep = build_separator("ast_guided", pretrained, max_passes=1)
    assert sep.options["backend_url"] is None
    sep.write_extras(tmp_path / "off", sep.separate(mixture(), Query()), SR)
    assert attempts == [] and (tmp_path / "off" / "events.json").is_file()


def test_separate_py_writes_every_output_at_the_input_rate(pretrained, tmp_path):
    """`separate.py --method ast_guided` end to end: the pipeline's WAVs at the
    input's rate, then events.json and the debug figures."""
    import soundfile as sf
    import soxr

    from common.encoders import PROJECT_ROOT
    separate_main = pytest.importorskip("common.separation.cli").separate_main  # the separation framework
    from common.task import load_task
    rate = 44100
    mix = soxr.resample(mixture(), SR, rate).astype(np.float32)
    sf.write(tmp_path / "street.wav", mix, rate)
    separate_main(load_task(PROJECT_ROOT / "source_separation"),
                  [str(tmp_path / "street.wav"), "-o", str(tmp_path / "out"), "--method", "ast_guided",
                   "--pretrained-dir", str(pretrained), "--query", "siren", "--max-passes", "2",
                   "--min-eratio", "0", "--debug"])
    folder = tmp_path / "out" / "street"
    wavs = ["00_separated.wav", "01_separated.wav", "02_residual.wav", "target.wav"]
    assert sorted(p.name for p in folder.glob("*.wav")) == wavs
    for name in wavs:
        info = sf.info(str(folder / name))
        assert info.samplerate == rate and info.frames == len(mix)
    parts = sum(sf.read(str(folder / name))[0] for name in wavs[:3])
    # resampled to 16 kHz and back: the parts still add up to the mixture below 8 kHz
    assert np.sum((parts - mix) ** 2) < 1e-3 * np.sum(mix ** 2)
    events = json.loads((folder / "events.json").read_text())
    assert events["ast_calls"] == 2 and [e["file"] for e in events["events"]] == wavs[:2]
    assert sorted(p.name for p in folder.glob("debug_pass_*.png")) == ["debug_pass_00.png", "debug_pass_01.png"]
    record = json.loads((folder / "separation.json").read_text())
    assert record["info"]["target_pass"] == 0 and record["method_config"]["max_passes"] == 2

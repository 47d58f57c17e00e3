"""One way errors reach the user (common.entry) and settings refused at parse
time (common.options, encoders' declared options)."""
import errno
import json
import math
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT
from hypothesis import given
from hypothesis import strategies as st

from common.benchmark import parser as benchmark_parser
from common.cli import extract_main, extract_parser, train_parser
from common.encoders import build_encoder
from common.entry import DEBUG_ENV, entry_point, one_line
from common.errors import UserError
from common.options import OptionError, device, learning_rate, non_negative_int, positive_float, positive_int
from common.probing.predict import predict_parser
from common.task import load_task

ESC50 = load_task(PROJECT_ROOT / "esc50_feature_fc")


# --------------------------------------------------------------------------- entry points
@entry_point
def failing(error, argv=None):
    raise error


@pytest.mark.parametrize("error, expected", [
    (UserError("the thing is wrong: do this"), "the thing is wrong: do this"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/meta.json"), "/x/meta.json"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/results.csv"), "Permission denied: /x/results.csv"),
    (OSError(errno.ENOSPC, "No space left on device", "/x/shard.safetensors"), "the disk is full"),
    (json.JSONDecodeError("Expecting value", "{", 1), "a JSON file is malformed"),
    (RuntimeError("Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is False"),
     "device error"),
])
def test_user_and_environment_errors_exit_in_one_line(error, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        failing(error, [])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and expected in message and "\n" not in message


def test_safetensors_errors_are_one_line(tmp_path):
    from safetensors import safe_open
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(Exception) as info:
        safe_open(str(bad), "np")
    assert one_line(info.value).startswith("a safetensors file is damaged")


def test_bugs_keep_their_traceback_and_debug_shows_every_one(monkeypatch):
    with pytest.raises(TypeError):
        failing(TypeError("a bug"), [])
    with pytest.raises(UserError):
        failing(UserError("shown with its traceback"), ["--debug"])
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(UserError):
        failing(UserError("shown with its traceback"), [])


def run_script(folder, script, *args, **env):
    import os
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=PROJECT_ROOT / folder, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def test_a_damaged_store_is_one_line_and_debug_gives_the_traceback(tmp_path):
    store = tmp_path / "features" / "esc50" / "mfcc"
    store.mkdir(parents=True)
    (store / "meta.json").write_text("")        # as a crashed writer used to leave it
    out = run_script("esc50_feature_fc", "train.py", "--work-dir", tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "meta.json is damaged" in out.stderr and "no complete esc50 features" in out.stderr
    from common.data import DatasetError
    with pytest.raises(DatasetError):        # --debug: the traceback instead of the line
        extract_main(ESC50, ["--encoder", "mfcc", "--data-root", str(tmp_path / "none"), "--debug"])


# --------------------------------------------------------------------------- parse-time checks
PARSERS = {"train": lambda: train_parser(ESC50), "extract": lambda: extract_parser(ESC50),
           "predict": lambda: predict_parser(ESC50), "benchmark": benchmark_parser}
REQUIRED = {"train": [], "extract": ["--encoder", "mfcc"], "predict": ["x.wav"], "benchmark": ["--demo"]}


@pytest.mark.parametrize("script, option, value", [
    ("train", "--batch-size", "-5"), ("train", "--lr", "0"), ("train", "--lr", "-1"), ("train", "--lr", "nan"),
    ("train", "--lr", "inf"), ("train", "--epochs", "0"), ("train", "--seeds", "-1"), ("train", "--device", "gpu7"),
    ("train", "--device", "cuda"), ("extract", "--shard-size", "0"), ("extract", "--max-batch-seconds", "0"),
    ("extract", "--max-batch-seconds", "nan"), ("extract", "--batch-size", "0"), ("extract", "--num-workers", "-1"),
    ("extract", "--device", "cuda:0"), ("predict", "--top-k", "0"), ("predict", "--batch-size", "-1"),
    ("benchmark", "--epochs", "0"), ("benchmark", "--num-workers", "-2"), ("benchmark", "--device", "tpu"),
])
def test_nonsense_settings_are_refused_at_parse_time(script, option, value, capsys):
    import torch
    if "cuda" in value and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        PARSERS[script]().parse_args(REQUIRED[script] + [option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}" in err and "must" in err or "unknown device" in err or "CUDA" in err


def test_run_benchmark_epochs_are_used_as_given_and_named_in_the_recipe():
    from common.cli import recipe_from_args
    from common.probing.training import DEFAULT_RECIPE
    assert recipe_from_args(benchmark_parser().parse_args(["--demo"])) is DEFAULT_RECIPE
    recipe = recipe_from_args(benchmark_parser().parse_args(["--demo", "--epochs", "3"]))
    assert (recipe.name, recipe.epochs, recipe.item_budget) == ("grid-v2+epochs=3", 3, None)
    assert recipe.plan(10_000_000)["epochs"] == 3   # not shrunk by the size rules
    assert recipe_from_args(train_parser(ESC50).parse_args(["--epochs", "3"])) == recipe   # as train.py does


@pytest.mark.parametrize("script", ["extract", "train", "predict", "benchmark", "report"])
def test_help_states_each_default_once_and_never_none(script):
    from common.reporting.report import parser as report_parser
    parsers = {**PARSERS, "report": report_parser}
    parser = parsers[script]()
    formatter = parser._get_formatter()
    helps = {a.dest: formatter._expand_help(a) for a in parser._actions if a.help}
    for dest, text in helps.items():
        assert "(default: None)" not in text and "(default: False)" not in text, dest
        assert text.count("default:") <= 1, dest   # a default the help text states is not appended again
    if script == "train":
        assert helps["head"].endswith("or both (default: both)")


def test_sensible_settings_pass():
    args = train_parser(ESC50).parse_args(["--lr", "1e-3", "--batch-size", "8", "--epochs", "3", "--seeds", "0", "1",
                                           "--device", "cpu"])
    assert (args.lr, args.batch_size, args.epochs, args.seeds, args.device) == (1e-3, 8, 3, [0, 1], "cpu")
    args = extract_parser(ESC50).parse_args(["--encoder", "mfcc", "--num-workers", "0", "--max-batch-seconds", "2.5"])
    assert (args.num_workers, args.max_batch_seconds) == (0, 2.5)


@pytest.mark.parametrize("options, message", [
    ({"n_mfcc": "0"}, "n_mfcc=0: 0 must be a positive integer"),
    ({"n_mfcc": "many"}, "not an integer"),
    ({"n_mfcc": "80"}, "n_mfcc=80 exceeds n_mels=64"),
    ({"colour": "blue"}, "unknown option colour"),
])
def test_encoder_options_are_declared_and_checked(options, message):
    with pytest.raises(OptionError, match=message):
        build_encoder("mfcc", **options)


def test_encoder_option_refused_before_any_data_is_read(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        extract_main(ESC50, ["--encoder", "mfcc", "--encoder-option", "n_mfcc=0", "--data-root",
                             str(tmp_path / "missing")])
    assert exit_info.value.code == "error: encoder option n_mfcc=0: 0 must be a positive integer (1 or more)"


# --------------------------------------------------------------------------- properties
numbers = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.text(max_size=6))


def as_float(text):
    try:
        return float(text)
    except ValueError:
        return None


def as_int(text):
    try:
        return int(text)
    except ValueError:
        return None


@given(numbers)
def test_cli_numbers_accepted_only_when_valid(text):
    for parse, valid in ((positive_int, lambda: (as_int(text) or 0) > 0),
                         (non_negative_int, lambda: as_int(text) is not None and as_int(text) >= 0),
                         (positive_float, lambda: as_float(text) is not None and math.isfinite(as_float(text))
                          and as_float(text) > 0),
                         (learning_rate, lambda: as_float(text) is not None and 0 < as_float(text) < 10)):
        try:
            value = parse(text)
        except OptionError as err:
            assert not valid(), f"{parse.__name__} refused a valid {text!r}: {err}"
            assert "\n" not in str(err)
        else:
            assert valid(), f"{parse.__name__} accepted {text!r}"
            assert value > 0 or (parse is non_negative_int and value == 0)


@given(st.text(max_size=8))
def test_device_names_accepted_only_when_known(text):
    try:
        value = device(text)
    except OptionError:
        return
    assert value in ("auto", "cpu") or value.startswith(("cuda", "mps"))

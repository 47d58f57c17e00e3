"""Every registered encoder: importable, declares the contract, and explains a
missing checkpoint (naming what to put where) instead of failing obscurely."""
import pytest

from common.encoders import ENCODERS, build_encoder, encoder_class
from common.encoders.base import Encoder
from common.encoders.checkpoints import CheckpointError

NO_WEIGHTS = {"mfcc"}
IN_WHEELS = {"crepe", "resemblyzer"}  # weights ship inside optional PyPI packages


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_registered_class_declares_the_contract(name):
    cls = encoder_class(name)
    assert issubclass(cls, Encoder)
    assert isinstance(cls.sample_rate, int) and cls.sample_rate in (16000, 32000, 48000)
    assert cls.window_seconds is None or cls.window_seconds > 0
    assert callable(getattr(cls, "from_options", None))


@pytest.mark.parametrize("name", sorted(set(ENCODERS) - NO_WEIGHTS - IN_WHEELS))
def test_missing_checkpoint_names_the_expected_place(name, tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_encoder(name, pretrained_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message, message


def test_unknown_encoder_lists_the_registry():
    with pytest.raises(KeyError, match="mfcc"):
        encoder_class("nope")

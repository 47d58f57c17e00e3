import os

import numpy as np
import pytest
import torch

from common.encoders.checkpoints import CheckpointError, load_strict, read_state_dict, require_file


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/checkpoint-code-ran",))


def test_official_wrappers_and_numpy_side_data_load_as_tensors(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}, "sampler": {"indexes": np.arange(5)}, "iteration": 3},
               tmp_path / "panns.pth")
    assert set(read_state_dict(tmp_path / "panns.pth")) == {"w"}
    torch.save({"state_dict": {"a.b": torch.zeros(1)}, "epoch": 1}, tmp_path / "lightning.ckpt")
    assert set(read_state_dict(tmp_path / "lightning.ckpt")) == {"a.b"}


def test_pickled_code_is_refused_without_running(tmp_path):
    marker = "/tmp/checkpoint-code-ran"
    if os.path.exists(marker):
        os.remove(marker)
    torch.save({"model": {"w": torch.ones(1)}, "payload": RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refuses"):
        read_state_dict(tmp_path / "evil.pth")
    assert not os.path.exists(marker)


def test_missing_and_mismatched_checkpoints_are_explained(tmp_path):
    with pytest.raises(CheckpointError, match="expected .*model.pt.*example.org"):
        require_file(tmp_path / "model.pt", "weights", "https://example.org")
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(first: 0.bias\)"):
        load_strict(module, {"0.weight": torch.zeros(2, 3)}, "x.pt")
    with pytest.raises(CheckpointError, match="0.weight"):
        load_strict(module, {"0.weight": torch.zeros(4, 3), "0.bias": torch.zeros(2)}, "x.pt")

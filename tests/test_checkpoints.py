import pytest
import torch
from torch import nn

from srquant.models import CheckpointError, create, read_checkpoint


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)


def test_full_module_pickle_is_refused_without_running_it(tmp_path):
    torch.save(_Net(), tmp_path / "legacy.pth")  # a pickled module object, not a state dict
    with pytest.raises(CheckpointError, match="never unpickles arbitrary code"):
        read_checkpoint(tmp_path / "legacy.pth")


def test_missing_file_and_non_dict(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "nope.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_checkpoint(tmp_path / "list.pth")


def test_containers_and_prefixes_are_unwrapped(tmp_path):
    ref = create("abpn", 2)
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    for container in ({"params_ema": state}, {"state_dict": state}, state):
        torch.save(container, tmp_path / "ckpt.pth")
        model = create("abpn", 2, weights=tmp_path / "ckpt.pth")
        for k, v in model.state_dict().items():
            assert torch.equal(v, ref.state_dict()[k])


def test_mismatch_names_missing_unexpected_and_shapes(tmp_path):
    state = create("abpn", 2).state_dict()
    state["extra.weight"] = state.pop("body.0.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        create("abpn", 2, weights=tmp_path / "bad.pth")
    assert "missing keys: body.0.weight" in str(err.value) and "unexpected keys: extra.weight" in str(err.value)
    torch.save(create("abpn", 2).state_dict(), tmp_path / "x2.pth")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        create("abpn", 4, weights=tmp_path / "x2.pth")


def test_unknown_model_and_scale():
    with pytest.raises(KeyError, match="unknown model"):
        create("nope", 2)
    with pytest.raises(ValueError, match="supports scales"):
        create("abpn", 8)

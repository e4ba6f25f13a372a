"""RecurrentClassifier: the RNN/GRU/LSTM baselines with a readout of the last step."""

import pytest
import torch
from torch import nn

from dyna.models import RecurrentClassifier

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_readout_of_the_last_step_matches_torch(cell):
    torch.manual_seed(0)
    model = RecurrentClassifier(3, 5, 4, cell=cell)
    inputs = torch.randn(2, 7, 3)
    sequence, _ = model.recurrent(inputs)
    torch.testing.assert_close(model(inputs), model.readout(sequence[:, -1]))
    assert isinstance(model.recurrent, {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell])
    assert model.recurrent.hidden_size == 5 and model.recurrent.batch_first


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes_devices_and_factory_kwargs(device, dtype):
    model = RecurrentClassifier(1, 8, 10, cell="gru", device=device, dtype=dtype)
    assert all(p.dtype == dtype and p.device.type == device for p in model.parameters())
    out = model(torch.rand(3, 6, 1, device=device, dtype=dtype))
    assert out.shape == (3, 10) and out.dtype == dtype


def test_meta_state_dict_repr_and_bad_input():
    model = RecurrentClassifier(1, 8, 10, device="meta")
    model.to_empty(device="cpu")
    model.reset_parameters()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    copy = RecurrentClassifier(1, 8, 10)
    copy.load_state_dict(model.state_dict())
    x = torch.rand(2, 5, 1)
    torch.testing.assert_close(copy(x), model(x))
    assert "cell='lstm'" in repr(model) and "n_hidden=8" in repr(model)
    with pytest.raises(ValueError, match="cell"):
        RecurrentClassifier(1, 8, 10, cell="transformer")
    with pytest.raises(ValueError, match="n_hidden"):
        RecurrentClassifier(1, 0, 10)
    with pytest.raises(ValueError, match="input must be"):
        model(torch.rand(5, 1))


def test_compiles_with_the_eager_backend():
    # Dynamo refuses nn.RNN/GRU/LSTM in a full graph ("Attempted to wrap RNN, GRU, or LSTM"),
    # so the capture test allows the graph break around the recurrent layer.
    model = RecurrentClassifier(1, 4, 3, cell="rnn")
    x = torch.rand(2, 5, 1)
    compiled = torch.compile(model, backend="eager")
    torch.testing.assert_close(compiled(x), model(x))

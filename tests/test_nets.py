import pytest
import torch

from interp.nets import MLP, SinusoidalTimeEmbedding, TemporalConvNet


def test_mlp_is_a_field_for_any_state_shape():
    net = MLP((1, 4, 4), hidden=32, depth=2)
    x = torch.randn(6, 1, 4, 4)
    assert net(torch.rand(6), x).shape == x.shape
    assert net(torch.tensor(0.3), x).shape == x.shape


def test_time_changes_the_output_and_embedding_is_bounded():
    torch.manual_seed(0)
    net = MLP((2,), hidden=16, depth=1)
    x = torch.randn(3, 2)
    assert not torch.allclose(net(0.1, x), net(0.9, x))
    emb = SinusoidalTimeEmbedding(8)(torch.linspace(0, 1, 5))
    assert emb.shape == (5, 8) and emb.abs().max() <= 1


def test_bad_input():
    with pytest.raises(ValueError, match="even"):
        SinusoidalTimeEmbedding(3)
    with pytest.raises(ValueError, match="state_shape"):
        MLP(())
    net = MLP((2,))
    with pytest.raises(ValueError, match="shape"):
        net(0.5, torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        net(2.0, torch.randn(3, 2))


def test_temporal_conv_net_is_a_field_on_sequences_with_optional_channels_and_condition():
    torch.manual_seed(0)
    net = TemporalConvNet(12, width=8, depth=3)
    x = torch.randn(5, 12)
    assert net(torch.rand(5), x).shape == x.shape and net(0.4, x).shape == x.shape
    assert not torch.allclose(net(0.1, x), net(0.9, x))
    multi = TemporalConvNet(10, channels=3, width=8, depth=2)
    assert multi(0.5, torch.randn(4, 3, 10)).shape == (4, 3, 10)
    conditioned = TemporalConvNet(12, width=8, depth=2, condition_channels=2)
    a, b = torch.randn(5, 2, 12), torch.randn(5, 2, 12)
    assert not torch.allclose(conditioned(0.5, x, a), conditioned(0.5, x, b))


def test_temporal_conv_net_sees_the_whole_window():
    # the receptive field spans the window: changing the first position changes the output at the last
    torch.manual_seed(0)
    net = TemporalConvNet(24, width=8, depth=5)
    x = torch.randn(1, 24)
    y = x.clone()
    y[0, 0] += 1.0
    assert (net(0.5, x) - net(0.5, y))[0, -1].abs() > 0


def test_temporal_conv_net_bad_input():
    with pytest.raises(ValueError, match="length"):
        TemporalConvNet(0)
    with pytest.raises(ValueError, match="condition_channels"):
        TemporalConvNet(8, condition_channels=-1)
    net = TemporalConvNet(8, width=4, depth=1).float()
    with pytest.raises(ValueError, match="shape"):
        net(0.5, torch.randn(3, 9, dtype=torch.float32))
    with pytest.raises(ValueError, match="no condition"):
        net(0.5, torch.randn(3, 8, dtype=torch.float32), torch.randn(3, 1, 8))
    with pytest.raises(TypeError, match="float64"):
        net(0.5, torch.randn(3, 8, dtype=torch.float64))
    conditioned = TemporalConvNet(8, width=4, depth=1, condition_channels=2)
    with pytest.raises(ValueError, match="needs a condition"):
        conditioned(0.5, torch.randn(3, 8))

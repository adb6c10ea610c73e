import pytest
import torch

from interp.nets import MLP, SinusoidalTimeEmbedding


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

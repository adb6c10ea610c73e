import pytest
import torch

from interp import grids
from interp.schedules import LinearSchedule, VPSchedule


def test_uniform_and_quadratic():
    g = grids.uniform(4)
    assert torch.allclose(g, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    back = grids.uniform(4, 1.0, 0.0)
    assert torch.allclose(back, g.flip(0))
    q = grids.quadratic(10, 0.0, 1.0)
    steps = q[1:] - q[:-1]
    assert q[0] == 0 and q[-1] == 1 and (steps[1:] < steps[:-1]).all()


def test_log_snr_uniform_has_equal_log_snr_steps():
    schedule = VPSchedule()
    g = grids.log_snr_uniform(schedule, 12, 0.0, schedule.time_range[1])
    lam = torch.log(schedule.beta(g)) - torch.log(schedule.alpha(g))
    assert torch.allclose(lam[1:] - lam[:-1], (lam[-1] - lam[0]) / 12 * torch.ones(12), rtol=1e-8)


def test_edm_grid_follows_karras_formula():
    schedule = LinearSchedule(gaussian_base=True)
    g = grids.edm(schedule, 8, 1 / 81, 1 - 1e-3, rho=7.0)
    sigma = schedule.alpha(g) / schedule.beta(g)
    a, b = sigma[0] ** (1 / 7), sigma[-1] ** (1 / 7)
    expected = (a + torch.linspace(0, 1, 9) * (b - a)) ** 7
    assert torch.allclose(sigma, expected, rtol=1e-8)
    assert abs(float(sigma[0]) - 80.0) < 1e-9


@pytest.mark.parametrize(
    "grid, message",
    [
        (torch.tensor([0.0]), "at least two"),
        (torch.tensor([0.0, 0.5, 0.4, 1.0]), "strictly increasing or strictly decreasing"),
        (torch.tensor([0.0, 1.5]), r"\[0, 1\]"),
        (torch.tensor([0.0, float("nan")]), "finite"),
        (torch.tensor([[0.0, 1.0]]), "1-D"),
    ],
)
def test_bad_grids_raise(grid, message):
    with pytest.raises(ValueError, match=message):
        grids.check_grid(grid)


def test_schedule_grids_need_gaussian_base_and_finite_levels():
    with pytest.raises(ValueError, match="Gaussian-base"):
        grids.log_snr_uniform(LinearSchedule(), 4, 0.1, 0.9)
    with pytest.raises(ValueError, match="infinite"):
        grids.edm(LinearSchedule(gaussian_base=True), 4, 0.0, 0.9)
    with pytest.raises(ValueError, match="n_steps"):
        grids.uniform(0)

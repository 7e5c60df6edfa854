"""Heavy-rain loss weights: the known formula, and the module's weights read from the batch's coarse rain."""

from __future__ import annotations

import pytest
import torch

from downscale.training.heavy_rain import combined_loss_weights, heavy_rain_weights

EPS = 1.0 / 86_400  # 1 mm/day in kg m-2 s-1


def test_weights_follow_one_plus_rate_over_epsilon_to_the_power():
    rate = torch.tensor([0.0, EPS, 3 * EPS, -2 * EPS])
    torch.testing.assert_close(heavy_rain_weights(rate, EPS, 1.0), torch.tensor([1.0, 2.0, 4.0, 1.0]))
    torch.testing.assert_close(heavy_rain_weights(rate, EPS, 0.5), torch.tensor([1.0, 2.0 ** 0.5, 2.0, 1.0]))
    assert torch.equal(heavy_rain_weights(rate, EPS, 0.0), torch.ones(4))


@pytest.mark.parametrize(("epsilon", "exponent", "match"), [(0.0, 1.0, "epsilon"), (EPS, -1.0, "exponent")])
def test_bad_parameters_are_refused(epsilon, exponent, match):
    with pytest.raises(ValueError, match=match):
        heavy_rain_weights(torch.ones(3), epsilon, exponent)


def test_combined_weights_have_mean_one_and_keep_the_products_ratios():
    rain = torch.tensor([[1.0, 2.0], [4.0, 1.0]]).expand(3, 2, 2)
    area = torch.tensor([[0.5, 1.5], [1.0, 1.0]])
    w = combined_loss_weights(rain, area)
    assert w.shape == (3, 2, 2) and w.mean().item() == pytest.approx(1.0)
    torch.testing.assert_close(w[0] / w[0, 0, 0], (rain[0] * area) / 0.5)
    torch.testing.assert_close(combined_loss_weights(rain, None)[0], rain[0] / 2.0)

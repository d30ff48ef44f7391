import math

import pytest

from benchmark.base.metrics import attack_success_rate, clean_accuracy, der, mean_std


def test_definitions():
    assert clean_accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert attack_success_rate([1, 1, 0, 1], target_label=1) == 0.75
    assert math.isnan(attack_success_rate([], 1))


@pytest.mark.parametrize("before, after, expected", [
    ((0.9, 1.0), (0.9, 0.0), 1.0),      # ASR removed at no cost
    ((0.9, 1.0), (0.9, 1.0), 0.5),      # no effect
    ((0.9, 1.0), (0.8, 0.2), 0.85),     # (0.8 - 0.1 + 1) / 2
    ((0.9, 0.5), (0.95, 0.9), 0.5),     # gains are not rewarded, ASR increase is not penalised twice
])
def test_der(before, after, expected):
    assert der(before[0], before[1], after[0], after[1]) == pytest.approx(expected)


def test_mean_std_ignores_missing():
    assert mean_std([1.0, 3.0, None]) == (2.0, pytest.approx(2 ** 0.5))
    assert mean_std([0.5]) == (0.5, 0.0)

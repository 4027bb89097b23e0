import math

import pytest
import torch

from benchmark.errors import GridError, UnknownNameError
from benchmark.ml.method import TrainingProgress
from benchmark.ml.schedules import SCHEDULES, make_schedule


def at(step: int, total: int = 101, epoch: int = 0) -> TrainingProgress:
    return TrainingProgress(epoch=epoch, step=step, total_steps=total)


def test_constant():
    s = make_schedule("constant", 0.7)
    assert [s(at(k)) for k in (0, 50, 100)] == [0.7, 0.7, 0.7]


def test_linear_whole_run_is_zero_first_and_target_last():
    s = make_schedule("linear", 2.0)
    assert s(at(0)) == 0.0
    assert s(at(25)) == pytest.approx(0.5)
    assert s(at(50)) == pytest.approx(1.0)
    assert s(at(100)) == pytest.approx(2.0)


def test_linear_with_start_and_duration_then_flat():
    s = make_schedule("linear", 1.0, start=0.2, duration=0.5)
    assert s(at(0)) == pytest.approx(0.2)
    assert s(at(25)) == pytest.approx(0.6)
    assert s(at(50)) == pytest.approx(1.0)
    assert s(at(90)) == pytest.approx(1.0)


def test_decay_from_start_to_target():
    s = make_schedule("decay", 0.5, start=2.0)
    assert [s(at(k)) for k in (0, 50, 100)] == pytest.approx([2.0, 1.25, 0.5])


def test_exponential():
    s = make_schedule("exponential", 3.0)
    assert s(at(0)) == 0.0
    assert s(at(50)) == pytest.approx(3.0 * (math.sqrt(2) - 1))
    assert s(at(100)) == pytest.approx(3.0)
    assert make_schedule("exponential", 3.0, duration=0.5)(at(75)) == pytest.approx(3.0)


def test_cyclical_restarts_on_cycle_boundaries():
    # 2 cycles of 50 steps (e.g. 10 epochs of 10 steps: a restart every 5 epochs), rise over half.
    s = make_schedule("cyclical", 1.0, cycles=2, ratio=0.5)
    values = [s(at(k, total=100)) for k in (0, 10, 25, 40, 50, 60, 99)]
    assert values == pytest.approx([0.0, 0.4, 1.0, 1.0, 0.0, 0.4, 1.0])


def test_kl_adaptive_from_a_tensor_stays_on_its_device_with_the_value_of_the_float():
    import torch

    s = make_schedule("kl-adaptive", 2.0, center=5.0)
    for kl in (0.0, 3.25, 5.0, 9.5, 1e4):
        weight = s(at(1), last_kl=torch.tensor(kl))
        assert isinstance(weight, torch.Tensor) and weight.dtype == torch.float64 and weight.dim() == 0
        assert float(weight) == s(at(1), last_kl=kl)  # the float path's value, to the last bit
    batched = torch.func.vmap(lambda kl: s(at(1), last_kl=kl))(torch.tensor([0.0, 5.0]))  # in a pack: no float()
    assert batched.tolist() == [s(at(1), last_kl=0.0), 1.0]


def test_kl_adaptive_uses_last_kl():
    s = make_schedule("kl-adaptive", 1.0)
    assert s(at(3), last_kl=5.0) == pytest.approx(0.5)
    assert s(at(3), last_kl=torch.tensor(5.0 + math.log(3))) == pytest.approx(0.25)
    assert s(at(0)) == pytest.approx(1 / (1 + math.exp(-5)))
    assert s(at(3), last_kl=1e6) == pytest.approx(0.0, abs=1e-12)
    assert make_schedule("kl-adaptive", 2.0, center=1.0)(at(3), last_kl=1.0) == pytest.approx(1.0)


def test_sigmoid_starts_and_ends_exactly_and_is_logistic_in_between():
    s = make_schedule("sigmoid", 2.0, start=0.5, duration=0.5, steepness=8.0)
    assert s(at(0)) == 0.5 and s(at(50)) == 2.0 and s(at(100)) == 2.0
    assert s(at(25)) == pytest.approx(1.25)  # the midpoint of the warm-up
    logistic = lambda u: 1 / (1 + math.exp(-8.0 * (u - 0.5)))
    for k in (5, 10, 40):
        ramp = (logistic(k / 50) - logistic(0)) / (logistic(1) - logistic(0))
        assert s(at(k)) == pytest.approx(0.5 + 1.5 * ramp)
    values = [s(at(k)) for k in range(101)]
    assert values == sorted(values)


def test_every_kind_is_registered():
    assert set(SCHEDULES.names()) == {"constant", "linear", "decay", "exponential", "cyclical", "kl-adaptive",
                                      "sigmoid"}


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(UnknownNameError, match="valid schedules: constant, cyclical"):
        make_schedule("cosine", 1.0)


@pytest.mark.parametrize("kind, options, message", [
    ("linear", {"warmup": 0.5}, "no option 'warmup'; valid options: start, duration"),
    ("decay", {}, "start"),
    ("linear", {"duration": 0.0}, "duration must be in"),
    ("cyclical", {"cycles": 0}, "cycles must be a positive integer"),
    ("cyclical", {"ratio": 1.5}, "ratio must be in"),
    ("sigmoid", {"steepness": 0.0}, "steepness must be in"),
])
def test_bad_options_are_grid_errors(kind, options, message):
    with pytest.raises(GridError, match=message):
        make_schedule(kind, 1.0, **options)

import pytest
import torch

from dclip_desktop.core.ddim import ddim_generate
from dclip_desktop.core.mixing import MixtureDenoiser, ModelDenoiser, WeightSchedule, attribute_mix, blend

from .conftest import tiny_unet


@pytest.fixture
def models():
    return tiny_unet(0), tiny_unet(1), tiny_unet(2)


def _gen(den, xt):
    return ddim_generate(den, xt, 300, 6)


def test_gamma_endpoints_are_exact(models):
    orig, ft, _ = models
    xt = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    o, f = ModelDenoiser(orig), ModelDenoiser(ft)
    assert torch.equal(_gen(blend(o, f, 0.0), xt), _gen(ModelDenoiser(orig), xt))
    assert torch.equal(_gen(blend(o, f, 1.0), xt), _gen(ModelDenoiser(ft), xt))
    mid = _gen(blend(o, f, 0.5), xt)
    assert not torch.equal(mid, _gen(o, xt))


def test_zero_weight_model_is_not_evaluated(models):
    orig, ft, _ = models
    o, f = ModelDenoiser(orig), ModelDenoiser(ft)
    _gen(blend(o, f, 1.0), torch.randn(1, 3, 16, 16))
    assert o.calls == 0 and f.calls == 6


def test_one_hot_multi_model_weights_equal_that_model(models):
    orig, a, b = models
    xt = torch.randn(1, 3, 16, 16)
    dens = [ModelDenoiser(m) for m in (orig, a, b)]
    mix = MixtureDenoiser(dens, WeightSchedule.constant([0, 0, 1]))
    assert torch.equal(_gen(mix, xt), _gen(ModelDenoiser(b), xt))


def test_time_dependent_schedule_switches_models(models):
    orig, a, b = models
    sched = WeightSchedule.of([(200, [1, 0]), (0, [0, 1])])
    assert sched.at(300) == (1, 0) and sched.at(200) == (1, 0) and sched.at(199) == (0, 1)
    da, db = ModelDenoiser(a), ModelDenoiser(b)
    _gen(MixtureDenoiser([da, db], sched), torch.randn(1, 3, 16, 16))
    # grid for (300, 6): 300, 240, 180, 120, 60, 0 → two steps at t ≥ 200, four below
    assert (da.calls, db.calls) == (2, 4)


def test_by_t0_gives_each_band_of_steps_to_the_finest_attribute_above_it(models):
    # background t0 601, colour t0 301, a second colour-level attribute at 301 sharing its band by weight
    sched = WeightSchedule.by_t0([301, 601, 301], [0.25, 0.5, 0.25])
    sched.validate(3)
    assert sched.rows == ((302, (0.0, 1.0, 0.0)), (0, (0.5, 0.0, 0.5)))
    assert sched.at(601) == sched.at(302) == (0.0, 1.0, 0.0) and sched.at(301) == (0.5, 0.0, 0.5)
    assert WeightSchedule.by_t0([400, 400], [0.3, 0.7]).rows == ((0, (0.3, 0.7)),)
    orig, a, b = models
    da, db = ModelDenoiser(a), ModelDenoiser(b)
    _gen(MixtureDenoiser([da, db], WeightSchedule.by_t0([300, 120], [0.5, 0.5])), torch.randn(1, 3, 16, 16))
    # grid for (300, 6): 300, 240, 180 above 120; 120, 60, 0 for the finer attribute
    assert (da.calls, db.calls) == (3, 3)
    with pytest.raises(ValueError, match="no positive weight"):
        WeightSchedule.by_t0([600, 300], [1.0, 0.0])


@pytest.mark.parametrize(
    "rows, n, message",
    [
        ([(0, [0.5, 0.5, 0.5])], 2, "3 weights for 2 models"),
        ([(0, [0.7, 0.7])], 2, "sum to 1"),
        ([(0, [1, 0]), (300, [0, 1])], 2, "decreasing"),
        ([(300, [1, 0])], 2, "last schedule threshold must be 0"),
        ([], 2, "no rows"),
    ],
)
def test_invalid_weights_are_explained(rows, n, message):
    with pytest.raises(ValueError, match=message):
        WeightSchedule.of(rows).validate(n)


def test_degree_blends_the_mix_toward_the_original(models):
    orig, a, b = models
    o, da, db = (ModelDenoiser(m) for m in models)
    xt = torch.randn(1, 3, 16, 16)
    sched = WeightSchedule.constant([0.5, 0.5])
    full = attribute_mix(o, [da, db], sched, 1.0)
    none = attribute_mix(o, [da, db], sched, 0.0)
    assert torch.equal(_gen(none, xt), _gen(ModelDenoiser(orig), xt))
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(full(x, 100), 0.5 * da(x, 100) + 0.5 * db(x, 100))
    with pytest.raises(ValueError, match="degree"):
        attribute_mix(o, [da], WeightSchedule.constant([1.0]), 1.5)

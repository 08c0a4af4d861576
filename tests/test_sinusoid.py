import math

import pytest
import torch

from metalib import models, tasks


def test_sample_shapes_ranges_and_function():
    fam = tasks.Sinusoid()
    g = torch.Generator().manual_seed(0)
    params = fam.sample_params(500, generator=g)
    assert params.amplitude.min() >= 0.1 and params.amplitude.max() <= 5.0
    assert params.phase.min() >= 0 and params.phase.max() <= math.pi
    x_s, y_s, x_q, y_q = fam.make_batch(params, 10, 7, generator=g)
    assert x_s.shape == y_s.shape == (500, 10, 1) and x_q.shape == y_q.shape == (500, 7, 1)
    assert x_s.min() >= -5 and x_s.max() <= 5
    a, p = params.amplitude.view(-1, 1, 1), params.phase.view(-1, 1, 1)
    torch.testing.assert_close(y_s, a * torch.sin(x_s - p))
    torch.testing.assert_close(y_q, a * torch.sin(x_q - p))
    # the ranges are really covered, not a constant
    assert params.amplitude.max() - params.amplitude.min() > 4.0
    assert params.phase.max() - params.phase.min() > 2.5


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    fam = tasks.Sinusoid()
    a = fam.sample(4, 5, 5, generator=torch.Generator().manual_seed(7))
    b = fam.sample(4, 5, 5, generator=torch.Generator().manual_seed(7))
    c = fam.sample(4, 5, 5, generator=torch.Generator().manual_seed(8))
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)
    assert not torch.equal(a.x_s, c.x_s)


def test_float64_batches_for_gradient_checks():
    batch = tasks.Sinusoid().sample(2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in batch)


def test_paper_mlp_shape():
    m = models.sinusoid_mlp()
    sizes = [tuple(p.shape) for p in m.parameters()]
    assert sizes == [(40, 1), (40,), (40, 40), (40,), (1, 40), (1,)]
    assert m(torch.zeros(3, 1)).shape == (3, 1)


@pytest.mark.parametrize("kwargs", [dict(k_support=0), dict(k_query=0), dict(n_tasks=0)])
def test_bad_counts_raise(kwargs):
    args = dict(n_tasks=2, k_support=5, k_query=5) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        tasks.Sinusoid().sample(**args)


def test_bad_types_raise():
    with pytest.raises(TypeError):
        tasks.Sinusoid().sample(2, 5.0, 5)
    with pytest.raises(ValueError):
        tasks.Sinusoid(amplitude=(5.0, 0.1))

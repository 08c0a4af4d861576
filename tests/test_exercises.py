"""The exercise checks accept the reference solutions and name the mistake in typical wrong answers."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from metalib.course import exercises, solutions
from metalib.course.exercises import check_inner_step, check_reptile_update, check_sinusoid_sampler, check_split_task


def not_written(*args):
    raise NotImplementedError


# ----------------------------------------------------------------------------- every check
@pytest.mark.parametrize("check", [check_split_task, check_sinusoid_sampler, check_inner_step, check_reptile_update])
def test_unwritten_stub_gets_a_friendly_message(check):
    fb = check(not_written)
    assert not fb and "not written yet" in fb.message and "solution(" in fb.message
    assert repr(fb).startswith("✗")


@pytest.mark.parametrize("check", [check_split_task, check_sinusoid_sampler, check_inner_step, check_reptile_update])
def test_a_crash_is_reported_not_raised(check):
    def crashes(*args):
        raise KeyError("oops")

    fb = check(crashes)
    assert not fb and "KeyError" in fb.message


@pytest.mark.parametrize("name, check", [
    ("split_task", check_split_task), ("sample_sinusoid", check_sinusoid_sampler),
    ("inner_step", check_inner_step), ("reptile_update", check_reptile_update),
])
def test_reference_solutions_pass_and_are_printable(name, check, capsys):
    fb = check(exercises.EXERCISES[name])
    assert fb, fb.message
    assert repr(fb).startswith("✓")
    exercises.solution(name)
    assert "def " in capsys.readouterr().out
    with pytest.raises(KeyError, match="no exercise"):
        exercises.solution("nope")


# ----------------------------------------------------------------------------- split_task
@pytest.mark.parametrize("fn, words", [
    (lambda x, y, k: (x[:k], y[:k], x, y), "query set should hold"),
    (lambda x, y, k: (x[: k + 1], y[: k + 1], x[k + 1:], y[k + 1:]), "support set must hold"),
    (lambda x, y, k: (x[:k], y[1: k + 1], x[k:], y[:1].expand(x.shape[0] - k, 1) * 0 + y[k:]), "pair"),
    (lambda x, y, k: (x[:k], y[:k], torch.cat([x[:1], x[k + 1:]]), torch.cat([y[:1], y[k + 1:]])), "both"),
    (lambda x, y, k: (x[:k].flatten(), y[:k].flatten(), x[k:].flatten(), y[k:].flatten()), "shape"),
    (lambda x, y, k: (x[:k], y[:k]), "four tensors"),
])
def test_split_task_mistakes(fn, words):
    fb = check_split_task(fn)
    assert not fb and words in fb.message, fb.message


# ----------------------------------------------------------------------------- sample_sinusoid
def _sampler(amp=(0.1, 4.9), ph=math.pi, xr=(-5, 10), sign=-1, use_gen=True, flat=False, same=False):
    def fn(n, k, generator=None):
        g = generator if use_gen else torch.Generator().manual_seed(42)
        a = amp[0] + amp[1] * torch.rand(n, generator=g)
        if same:
            a = a[:1].expand(n).clone()
        p = ph * torch.rand(n, generator=g)
        x = xr[0] + xr[1] * torch.rand(n, k, 1, generator=g)
        y = a.view(-1, 1, 1) * torch.sin(x + sign * p.view(-1, 1, 1))
        return (a, p, x.squeeze(-1), y.squeeze(-1)) if flat else (a, p, x, y)
    return fn


@pytest.mark.parametrize("kw, words", [
    (dict(sign=+1), "wrong sign"),
    (dict(amp=(0.0, 1.0)), "amplitudes should"),
    (dict(ph=2 * math.pi), "phases"),
    (dict(xr=(0, 1)), "inputs should be uniform"),
    (dict(flat=True), "trailing feature dimension"),
    (dict(use_gen=False), "generator"),
    (dict(same=True), "same amplitude"),
])
def test_sampler_mistakes(kw, words):
    fb = check_sinusoid_sampler(_sampler(**kw))
    assert not fb and words in fb.message, fb.message


def test_sampler_that_ignores_the_generator_seed_is_caught():
    torch.manual_seed(0)

    def global_rng(n, k, generator=None):  # draws from the global RNG: not reproducible
        return solutions.sample_sinusoid_tasks(n, k, None)

    fb = check_sinusoid_sampler(global_rng)
    assert not fb and "generator" in fb.message


def test_sampler_missing_amplitude():
    def fn(n, k, generator=None):
        a, p, x, y = solutions.sample_sinusoid_tasks(n, k, generator)
        return a, p, x, torch.sin(x - p.view(-1, 1, 1))

    fb = check_sinusoid_sampler(fn)
    assert not fb and "amplitude is missing" in fb.message


# ----------------------------------------------------------------------------- inner_step
def _step(scale=1.0, sign=-1.0, detach_grad=False, detach_out=False, loss="mean", tuple_out=False, inplace=False):
    def fn(model, params, x, y, lr):
        def L(p):
            pred = functional_call(model, p, (x,))
            return F.mse_loss(pred, y, reduction="sum" if loss == "sum" else "mean")

        g = grad(L)(params)
        if detach_grad:
            g = {k: v.detach() for k, v in g.items()}
        if inplace:
            with torch.no_grad():
                for k in params:
                    params[k].sub_(lr * g[k])
            return dict(params)
        out = {k: p + sign * scale * lr * g[k] for k, p in params.items()}
        if detach_out:
            out = {k: v.detach() for k, v in out.items()}
        return (out, 0.0) if tuple_out else out
    return fn


@pytest.mark.parametrize("kw, words", [
    (dict(sign=+1.0), "wrong sign"),
    (dict(detach_grad=True), "first-order MAML"),
    (dict(detach_out=True), "detached"),
    (dict(loss="sum"), "mean squared error"),
    (dict(scale=0.5), "factor of 2"),
    (dict(tuple_out=True), "not a tuple"),
    (dict(inplace=True), "in place"),
])
def test_inner_step_mistakes(kw, words):
    fb = check_inner_step(_step(**kw))
    assert not fb and words in fb.message, fb.message


def test_inner_step_without_lr_and_wrong_keys():
    def no_lr(model, params, x, y, lr):
        g = grad(lambda p: F.mse_loss(functional_call(model, p, (x,)), y))(params)
        return {k: p - g[k] for k, p in params.items()}

    fb = check_inner_step(no_lr)
    assert not fb and "learning rate is missing" in fb.message
    fb = check_inner_step(lambda model, params, x, y, lr: {"w": params[next(iter(params))]})
    assert not fb and "same keys" in fb.message


def test_inner_step_with_autograd_create_graph_passes():
    def with_autograd(model, params, x, y, lr):
        loss = F.mse_loss(functional_call(model, params, (x,)), y)
        gs = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        return {k: p - lr * g for (k, p), g in zip(params.items(), gs)}

    assert check_inner_step(with_autograd)


# ----------------------------------------------------------------------------- reptile_update
def _reptile(kind):
    def fn(theta, phis, eps):
        d = {k: torch.stack([p[k] - t for p in phis]) for k, t in theta.items()}
        if kind == "minus":
            return {k: t - eps * d[k].mean(0) for k, t in theta.items()}
        if kind == "sum":
            return {k: t + eps * d[k].sum(0) for k, t in theta.items()}
        if kind == "no_eps":
            return {k: t + d[k].mean(0) for k, t in theta.items()}
        if kind == "last":
            return {k: t + eps * d[k][-1] for k, t in theta.items()}
        if kind == "inplace":
            for k, t in theta.items():
                t.add_(eps * d[k].mean(0))
            return theta
    return fn


@pytest.mark.parametrize("kind, words", [
    ("minus", "wrong direction"), ("sum", "summed"), ("no_eps", "ε is missing"),
    ("last", "only one task"), ("inplace", "in place"),
])
def test_reptile_update_mistakes(kind, words):
    fb = check_reptile_update(_reptile(kind))
    assert not fb and words in fb.message, fb.message

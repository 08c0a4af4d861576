"""The exercise machinery (``metalib.course.exercises``): feedback, crashes, the registry and
``solution()``, and the answers a check must accept although they are not the reference solution.
The reference solutions and the common mistakes of every exercise are run in
``tests/test_exercise_solutions.py``."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metalib.course import exercises
from metalib.course.exercises import (
    Exercise, Feedback, check_adapt_ce, check_episodes_for_ci, check_inner_step, check_proto_logits,
    check_sinusoid_sampler,
)


@pytest.mark.parametrize("name", list(exercises.REGISTRY))
def test_a_crash_is_reported_not_raised(name):
    def crashes(*args):
        raise KeyError("oops")

    fb = exercises.REGISTRY[name].check(crashes)
    assert not fb and "KeyError" in fb.message
    assert repr(fb).startswith("✗")


def test_a_non_function_is_reported():
    fb = check_inner_step(42)
    assert not fb and "expected a function" in fb.message


def test_the_names_other_course_modules_use_stay_importable():
    from metalib.course.exercises import CheckFailed, as_float, call_checked, close, run_check, solution  # noqa: F401

    assert run_check("x", lambda: "fine") == Feedback(True, "x", "fine")
    fb = run_check("x", lambda: (_ for _ in ()).throw(CheckFailed("wrong")))
    assert not fb and fb.message == "wrong" and str(fb) == "✗ x: wrong"
    assert close(torch.ones(2), torch.ones(2) + 1e-9) and not close(torch.ones(2), torch.ones(3))


def test_solution_prints_or_returns_the_source_and_names_the_others(capsys):
    exercises.solution("inner_step")
    assert "def inner_step" in capsys.readouterr().out
    assert "def split_task" in exercises.solution("split_task", show=False)
    with pytest.raises(KeyError, match="no exercise named 'nope'; there are: split_task"):
        exercises.solution("nope")
    assert exercises.solution("f", show=False, exercises={"f": exercises.REGISTRY["split_task"].solution}).startswith("def")
    assert set(exercises.EXERCISES) == set(exercises.REGISTRY)


def test_code_is_the_solution_without_its_docstring():
    e = exercises.REGISTRY["episodes_for_ci"]
    assert '"""' in e.source() and '"""' not in e.code()
    assert e.code() == "def episodes_for_ci(std, half_width):\n    return math.ceil((1.96 * std / half_width) ** 2)\n"


def test_register_adds_an_exercise_and_refuses_a_clash():
    e = Exercise("toy-exercise", "99_toy", solution=lambda: 1, check=lambda fn: Feedback(True, "toy", "ok"))
    try:
        assert exercises.register(e) is e and exercises.get("toy-exercise") is e
        assert exercises.register(e) is e   # the same one again: fine
        with pytest.raises(ValueError, match="registered already"):
            exercises.register(Exercise("toy-exercise", "99_toy", solution=print, check=print))
    finally:
        exercises.REGISTRY.pop("toy-exercise", None)
    with pytest.raises(TypeError):
        exercises.register("toy")


# ----------------------------------------------------------------------------- answers to accept
def test_inner_step_with_autograd_create_graph_passes():
    def with_autograd(model, params, x, y, lr):
        loss = F.mse_loss(functional_call(model, params, (x,)), y)
        gs = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        return {k: p - lr * g for (k, p), g in zip(params.items(), gs)}

    assert check_inner_step(with_autograd)


def test_adapt_ce_with_autograd_create_graph_passes():
    def with_autograd(model, params, x, y, lr, steps):
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(model, params, (x,)), y)
            gs = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            params = {k: p - lr * g for (k, p), g in zip(params.items(), gs)}
        return params

    assert check_adapt_ce(with_autograd)


def test_proto_logits_accepts_the_linear_form():
    """Dropping ||z_q||^2 shifts each query's logits by a constant: the same softmax, a legitimate answer."""
    def linear(z_s, y_s, z_q, n_way):
        c = torch.stack([z_s[y_s == k].mean(0) for k in range(n_way)])
        return 2 * z_q @ c.T - (c ** 2).sum(1)

    assert check_proto_logits(linear)


def test_proto_logits_solution_matches_metalib_protonet():
    """The reference solution agrees with metalib's ProtoNet helpers (an independent implementation)."""
    from metalib.algorithms.protonet import prototypes, squared_distances

    g = torch.Generator().manual_seed(3)
    z_s, y_s, z_q = torch.randn(10, 6, generator=g), torch.arange(5).repeat(2), torch.randn(7, 6, generator=g)
    ref = -squared_distances(z_q, prototypes(z_s, y_s, 5))
    assert torch.allclose(exercises.REGISTRY["proto_logits"].solution(z_s, y_s, z_q, 5), ref, atol=1e-5)


def test_episodes_for_ci_accepts_a_whole_float_and_numpy_style_answers():
    import math

    assert check_episodes_for_ci(lambda s, h: float(math.ceil((1.96 * s / h) ** 2)))


def test_episodes_for_ci_messages_never_contradict_themselves():
    """Too few episodes: the message's interval really is wider than asked; too many: n - 1 really suffice."""
    import math
    import re

    for answer in (lambda s, h: math.ceil((1.96 * s / h) ** 2) - 1, lambda s, h: math.ceil((1.96 * s / h) ** 2) + 1):
        fb = check_episodes_for_ci(answer)
        assert not fb
        m = re.search(r"sigma = ([\d.]+) and half-width ([\d.]+), (\d+) episodes", fb.message)
        std, h, n = float(m.group(1)), float(m.group(2)), int(m.group(3))
        if "wider than" in fb.message:
            assert 1.96 * std / math.sqrt(n) > h
        else:
            assert "more than needed" in fb.message and 1.96 * std / math.sqrt(n - 1) <= h


def test_sampler_accepts_float64():
    def f64(n, k, generator=None):
        return tuple(t.double() for t in exercises.REGISTRY["sample_sinusoid"].solution(n, k, generator))

    assert check_sinusoid_sampler(f64)

"""The few-shot exercise checks (notebooks 05, 06) accept the reference solutions and name typical mistakes."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from metalib.course import exercises_fewshot as ex
from metalib.course.exercises_fewshot import check_adapt_ce, check_proto_logits


def not_written(*args):
    raise NotImplementedError


@pytest.mark.parametrize("check", [check_proto_logits, check_adapt_ce])
def test_unwritten_stub_and_crash_are_reported(check):
    fb = check(not_written)
    assert not fb and "not written yet" in fb.message and "solution(" in fb.message

    def crashes(*args):
        raise KeyError("oops")

    fb = check(crashes)
    assert not fb and "KeyError" in fb.message


@pytest.mark.parametrize("name, check", [("proto_logits", check_proto_logits), ("adapt_ce", check_adapt_ce)])
def test_reference_solutions_pass_and_are_printable(name, check, capsys):
    fb = check(ex.EXERCISES[name])
    assert fb, fb.message
    assert repr(fb).startswith("✓")
    ex.solution(name)
    assert "def " + name in capsys.readouterr().out
    with pytest.raises(KeyError, match="no exercise"):
        ex.solution("nope")


def test_proto_logits_solution_matches_metalib_protonet():
    """The reference solution agrees with metalib's ProtoNet helpers (an independent implementation)."""
    from metalib.algorithms.protonet import prototypes, squared_distances

    g = torch.Generator().manual_seed(3)
    z_s, y_s, z_q = torch.randn(10, 6, generator=g), torch.arange(5).repeat(2), torch.randn(7, 6, generator=g)
    ref = -squared_distances(z_q, prototypes(z_s, y_s, 5))
    assert torch.allclose(ex.proto_logits(z_s, y_s, z_q, 5), ref, atol=1e-5)


# ----------------------------------------------------------------------------- proto_logits mistakes
def _protos(z_s, y_s, n_way, how="mean"):
    if how == "sorted":
        k = z_s.shape[0] // n_way
        return torch.stack([z_s[c * k:(c + 1) * k].mean(0) for c in range(n_way)])
    return torch.stack([getattr(z_s[y_s == c], how)(0) for c in range(n_way)])


def _proto_fn(sign=-1.0, squared=True, how="mean", transpose=False, shift=False):
    def fn(z_s, y_s, z_q, n_way):
        c = _protos(z_s, y_s, n_way, how)
        d = ((z_q[:, None] - c[None]) ** 2).sum(-1)
        if not squared:
            d = d.sqrt()
        out = sign * d
        if shift:  # drop ||z_q||^2: the same softmax, a legitimate variant
            out = out + (z_q ** 2).sum(-1, keepdim=True)
        return out.T if transpose else out
    return fn


@pytest.mark.parametrize("kw, words", [
    (dict(sign=+1.0), "wrong sign"),
    (dict(squared=False), "squared"),
    (dict(how="sum"), "sums"),
    (dict(how="sorted"), "sorted by class"),
    (dict(transpose=True), "one row per query"),
])
def test_proto_logits_mistakes(kw, words):
    fb = check_proto_logits(_proto_fn(**kw))
    assert not fb and words in fb.message, fb.message


def test_proto_logits_accepts_the_linear_form():
    assert check_proto_logits(_proto_fn(shift=True))


def test_proto_logits_rejects_in_place_changes():
    def fn(z_s, y_s, z_q, n_way):
        z_q.mul_(1.0)
        z_s.add_(0.0)
        y_s[0] = y_s[0]
        out = ex.proto_logits(z_s, y_s, z_q, n_way)
        z_q.add_(1.0)
        return out

    fb = check_proto_logits(fn)
    assert not fb and "in place" in fb.message


# ----------------------------------------------------------------------------- adapt_ce mistakes
def _adapt(sign=-1.0, one_step=False, detach=False, loss=F.cross_entropy, no_lr=False, detach_out=False):
    def fn(model, params, x, y, lr, steps):
        def L(p):
            return loss(functional_call(model, p, (x,)), y)

        for _ in range(1 if one_step else steps):
            g = grad(L)(params)
            if detach:
                g = {k: v.detach() for k, v in g.items()}
            params = {k: p + sign * (1.0 if no_lr else lr) * g[k] for k, p in params.items()}
        return {k: v.detach() for k, v in params.items()} if detach_out else params
    return fn


def _mse(logits, y):
    return F.mse_loss(logits, F.one_hot(y, logits.shape[-1]).to(logits.dtype))


@pytest.mark.parametrize("kw, words", [
    (dict(sign=+1.0), "wrong sign"),
    (dict(one_step=True), "only one step"),
    (dict(detach=True), "first-order MAML"),
    (dict(detach_out=True), "detached"),
    (dict(loss=_mse), "F.cross_entropy"),
    (dict(no_lr=True), "learning rate is missing"),
])
def test_adapt_ce_mistakes(kw, words):
    fb = check_adapt_ce(_adapt(**kw))
    assert not fb and words in fb.message, fb.message


def test_adapt_ce_in_place_is_caught():
    def fn(model, params, x, y, lr, steps):
        out = ex.adapt_ce(model, params, x, y, lr, steps)
        with torch.no_grad():
            for p in params.values():
                p.add_(1.0)
        return out

    fb = check_adapt_ce(fn)
    assert not fb and "in place" in fb.message

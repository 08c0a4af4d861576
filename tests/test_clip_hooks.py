"""Learners that clip their gradient do it in the ``clip_gradients`` hook, which both ``train_step`` and the
data-parallel step (``metalib.distributed.DistributedStep``) call: before, MANN, the LSTM baseline and the LSTM
meta-learner clipped inside their own ``train_step``, so a torchrun run trained them unclipped."""
import pytest
import torch

from metalib import fewshot


def _norm(learner):
    return float(torch.norm(torch.stack([p.grad.norm() for p in learner.parameters() if p.grad is not None])))


@pytest.mark.parametrize("algorithm", ["lstm-meta", "mann", "lstm-baseline", "relation"])
def test_clip_gradients_clips_to_the_configured_norm(algorithm):
    torch.manual_seed(0)
    learner = fewshot.build_learner(fewshot.default_config(algorithm, iterations=1))
    limit = learner.max_grad_norm if hasattr(learner, "max_grad_norm") else learner.clip_grad_norm
    assert limit, f"{algorithm}'s default clips"
    for p in learner.parameters():
        p.grad = torch.full_like(p, 10.0)
    assert _norm(learner) > limit * 10
    learner.clip_gradients()
    if algorithm == "relation":  # two networks, each clipped on its own (the official code)
        assert _norm(learner) <= 2 ** 0.5 * limit + 1e-5
    else:
        assert _norm(learner) <= limit + 1e-5


def test_the_lstm_meta_learner_does_not_clip_when_told_not_to():
    learner = fewshot.build_learner(fewshot.default_config("lstm-meta", iterations=1, max_grad_norm=0.0))
    for p in learner.parameters():
        p.grad = torch.full_like(p, 10.0)
    before = _norm(learner)
    learner.clip_gradients()
    assert _norm(learner) == before

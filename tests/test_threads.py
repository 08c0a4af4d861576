"""The CPU thread policy (docs/threads.md): ``evaluate`` and ``FewShotTrainer.fit``/``test`` run with
``metalib.device.CPU_THREADS`` torch threads unless told otherwise, and always give the caller's
count back — also when the call raises."""
import pytest
import torch

from _nets import synthetic_images
from metalib import algorithms, evaluate
from metalib.device import CPU_THREADS, cpu_threads
from metalib.fewshot import FewShotTrainer, default_config
from metalib.models import Conv4


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class Spy:
    """Wraps a learner's ``predict`` and records the thread count it ran under."""

    def __init__(self, learner):
        self.seen, inner = [], learner.predict

        def predict(*a, **kw):
            self.seen.append(torch.get_num_threads())
            return inner(*a, **kw)

        learner.predict = predict


def protonet():
    torch.manual_seed(0)
    return algorithms.get("protonet", Conv4(in_channels=1, hidden=4, image_size=16))


def test_policy_is_one_thread():
    assert CPU_THREADS == 1


def test_evaluate_runs_on_the_policy_and_restores(two_threads):
    learner, data = protonet(), synthetic_images(6, per_class=4)
    spy = Spy(learner)
    evaluate(learner, data, 3, 1, 2, episodes=2, device="cpu")
    assert set(spy.seen) == {1} and torch.get_num_threads() == 2
    spy.seen.clear()
    evaluate(learner, data, 3, 1, 2, episodes=2, device="cpu", threads=None)  # the caller's own setting
    assert set(spy.seen) == {2} and torch.get_num_threads() == 2


def test_restored_when_the_call_raises(two_threads):
    learner = protonet()

    def boom(*a, **kw):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")

    learner.predict = boom
    with pytest.raises(RuntimeError, match="inside"):
        evaluate(learner, synthetic_images(6, per_class=4), 3, 1, 2, episodes=2, device="cpu")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_get_one_line(bad):
    with pytest.raises(ValueError, match="threads must be an int >= 1 or None"):
        with cpu_threads(bad):
            pass
    with pytest.raises(ValueError, match="threads must be an int >= 1 or None"):
        evaluate(protonet(), synthetic_images(6, per_class=4), 3, 1, 2, episodes=2, threads=bad)


def test_fit_trains_on_the_policy_and_validates_under_it(two_threads):
    cfg = default_config("protonet", n_way=3, k_shot=1, dataset="custom", image_size=16, hidden=4, iterations=2,
                         meta_batch=1, train_way=3, train_query=2, test_query=2, val_every=1, val_episodes=2,
                         checkpoint_every=0)
    t = FewShotTrainer(cfg, synthetic_images(8, per_class=4), synthetic_images(6, per_class=4, seed=1),
                       progress=False, device="cpu", log=False)
    seen = []
    step = t.loop._step
    t.loop._step = lambda b: (seen.append(torch.get_num_threads()), step(b))[1]
    spy = Spy(t.learner)
    t.fit()
    assert seen and set(seen) == {1} and set(spy.seen) == {1}   # training and its validation
    assert torch.get_num_threads() == 2

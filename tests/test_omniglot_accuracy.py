"""Accuracy bars on the real Omniglot, CPU only.

- ProtoNet 5-way 1-shot trained from scratch for a fixed, small number of episodes reaches >= 96%
  on the test classes (600 seeded episodes).
- Every shipped few-shot checkpoint (metalib/weights/MANIFEST.json) reproduces its manifest
  accuracy on the same seeded test episodes the manifest used. Four of them (two fast to
  evaluate, and the two sequence learners) are re-measured on all 600 episodes (within the manifest's 95% CI; in practice exactly,
  on the same thread count); the others on the first 50 of those 600 episodes, whose mean must lie
  within 3 standard errors of the difference between a 50-episode prefix mean and the 600-episode
  mean, 3·σ·√(1/50 − 1/600) ≈ 0.41·σ (3.9 points for σ = 9.4): wrong or corrupt weights (chance is
  20%) fail it, and CI stays within its time budget (all 600 episodes of every weight would take
  about 40 CPU minutes, mostly the gradient-adapting learners).

These need the Omniglot archives: without them they are skipped with a how-to message, and under
``CI=true`` they fail (``metalib.data.require_omniglot``). They run with the test suite's thread
count (``tests/conftest.py``: 2). The shipped numbers were
measured with one thread; re-measured with one or two they came out identical.
"""
import pytest

import metalib
from metalib import fewshot
from metalib.data import Omniglot
from _data import require_omniglot

pytestmark = pytest.mark.data

FEWSHOT_WEIGHTS = [n for n in metalib.list_pretrained() if metalib.pretrained_info(n).get("kind") == "fewshot"]
# The miniImageNet weights are not re-measured here: 600 episodes of 84x84 take ~20 CPU minutes each.
# Notebook 07 re-evaluates their first 50 seeded test episodes under strict nbval instead.
OMNIGLOT_WEIGHTS = [n for n in FEWSHOT_WEIGHTS if metalib.pretrained_info(n)["dataset"] == "omniglot"]


@pytest.fixture(scope="module")
def omniglot():
    require_omniglot()
    return {split: Omniglot(split, progress=False) for split in ("train", "test")}


# The bounded budget of the from-scratch test: 450 training episodes, 60-way 1-shot as in Snell et
# al. but with 2 queries per class (not 5) and Adam at 4e-3 halved every 150 episodes (not 1e-3 every
# 2,000): the paper's schedule compressed to a few CPU minutes. Measured on the 600 test episodes:
# 97.05% ± 0.31% with 2 threads (~100 s of training on a free 2-core machine) and 96.97% ± 0.33% with
# 1 thread (the float trajectory depends on the thread count; 95.6% after 200 episodes, 96.3% after 300).
FROM_SCRATCH = dict(iterations=450, train_way=60, train_query=2, meta_lr=4e-3, lr_decay_every=150, val_every=0,
                    seed=0)


@pytest.mark.slow
def test_protonet_5w1s_from_scratch_reaches_96_percent(omniglot):
    cfg = fewshot.default_config("protonet", 5, 1, **FROM_SCRATCH)
    trainer = fewshot.FewShotTrainer(cfg, omniglot["train"], progress=False, device="cpu")
    trainer.fit()
    result = trainer.test(omniglot["test"], progress=False)
    print(f"ProtoNet 5w1s from scratch, {cfg.iterations} episodes of {cfg.train_way}-way training: {result}")
    assert result.episodes == 600
    assert result.mean >= 96.0, str(result)


# Re-measured on all 600 episodes: one metric-based, one gradient-adapting learner and the two sequence
# learners (seconds to evaluate; the LSTM baseline's first 50 episodes are easier than its 600, 63.2%
# against 57.5%, beyond the prefix bound). Every other weight: the first PREFIX of the same 600 episodes.
# the re-shipped budget weights (issue #29) are re-measured in full too: Matching takes ~20 s for 600 episodes
FULL_REPRODUCTION = ("protonet-omniglot-5w1s", "maml-omniglot-5w1s", "mann-omniglot", "lstm-baseline-omniglot",
                     "matching-omniglot-5w1s-budget30")
PREFIX = 50


@pytest.mark.slow
@pytest.mark.parametrize("name", OMNIGLOT_WEIGHTS)
def test_shipped_checkpoint_reproduces_its_manifest_accuracy(name, omniglot):
    info = metalib.pretrained_info(name)
    metrics = info["metrics"]
    full = name in FULL_REPRODUCTION
    result = fewshot.evaluate_pretrained(name, data=omniglot["test"], device="cpu",
                                         episodes=None if full else PREFIX)
    print(f"{name}: now {result}; manifest {metrics['test_accuracy']:.2f}% ± {metrics['ci95']:.2f}% (600 episodes)")
    assert metrics["episodes"] == 600 and result.episodes == (600 if full else PREFIX)
    assert result.seed == metrics["seed"] and result.q_query == metrics["query_per_class"]
    assert result.inner_steps == metrics["inner_steps"]
    # A prefix mean differs from the full mean by sigma*sqrt(1/n - 1/N) (one standard error).
    bound = metrics["ci95"] if full else 3 * metrics["std"] * (1 / PREFIX - 1 / 600) ** 0.5
    assert abs(result.mean - metrics["test_accuracy"]) <= bound, (
        f"{name}: {result.mean:.3f}% now on {result.episodes} episodes vs {metrics['test_accuracy']:.3f}% "
        f"(600 episodes) in the manifest; allowed difference {bound:.3f}")


def test_manifest_entries_say_how_they_were_made():
    """No data needed: every shipped few-shot entry records command, seed, iterations, device,
    minutes and test accuracy ± CI, and loads by name with its checksum verified."""
    for name in FEWSHOT_WEIGHTS:
        info = metalib.pretrained_info(name)
        for key in ("command", "seed", "iterations", "device", "minutes", "sha256", "config", "metrics"):
            assert key in info, (name, key)
        for key in ("test_accuracy", "ci95", "episodes", "seed", "query_per_class"):
            assert key in info["metrics"], (name, key)
        assert info["metrics"]["episodes"] == 600
        learner, config = fewshot.pretrained_learner(name)
        assert config.n_way == info["n_way"] and config.k_shot == info["k_shot"]

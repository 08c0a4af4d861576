"""A newcomer's first hour: what the issue's friction list asked for, each checked."""
import io
import sys

import pytest
import torch

import metalib
import metalib.data.omniglot as omni
from metalib import fewshot
from metalib.data import Omniglot

from _data import write_fake_omniglot
from _nets import synthetic_images


def test_a_cold_cache_prints_no_progress_bar_where_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    """In a notebook (stderr is not a terminal) decoding on a cold cache prints nothing that strict
    nbval would compare; asked for explicitly, the bar shows."""
    monkeypatch.setattr(omni, "EXPECTED", write_fake_omniglot(tmp_path))
    fake_err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fake_err)
    Omniglot("background", splits="background", root=tmp_path, cache_dir=tmp_path / "cold", image_size=16)
    assert fake_err.getvalue() == ""
    Omniglot("background", splits="background", root=tmp_path, cache_dir=tmp_path / "cold2", image_size=16,
             progress=True)
    assert "img" in fake_err.getvalue()


def test_a_runs_best_weights_load_back_as_a_learner(tmp_path):
    cfg = fewshot.default_config("protonet", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=4,
                                 train_way=3, train_query=2, val_every=2, val_episodes=3, test_query=2)
    data = synthetic_images(8, 6, 16)
    trainer = fewshot.FewShotTrainer(cfg, data, synthetic_images(6, 6, 16, seed=3), run_dir=tmp_path, progress=False)
    trainer.fit()
    best, config = fewshot.load_run(tmp_path)
    last, _ = fewshot.load_run(tmp_path, which="last")
    assert config == cfg and isinstance(best, metalib.ProtoNet)
    trainer.load_best()
    for (k, v), w in zip(trainer.learner.state_dict().items(), best.state_dict().values()):
        assert torch.equal(v, w), k
    assert metalib.evaluate(best, data, 3, 1, 2, episodes=5).episodes == 5
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        fewshot.load_run(tmp_path / "nope")


def test_the_starting_parameters_are_there_for_a_before_after_comparison():
    maml = metalib.MAML(metalib.models.sinusoid_mlp(), inner_lr=0.01, loss_fn=torch.nn.functional.mse_loss)
    before = {k: v.detach().clone() for k, v in maml.initial_params().items()}
    batch = metalib.tasks.Sinusoid().sample(4, 5, 5, generator=torch.Generator().manual_seed(0))
    metalib.training.meta_train(maml, lambda: batch, 3, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in maml.initial_params().items())

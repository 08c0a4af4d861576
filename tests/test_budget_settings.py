"""Budget settings and the cosine schedule (issue #29): the config fields, default_config(settings=...),
the learning rate per iteration against the formula, and resuming mid-anneal."""
import math

import pytest
import torch

from metalib import fewshot


def test_cosine_factor_by_hand():
    assert fewshot.cosine_factor(0, 100, 0.02) == 1.0
    assert fewshot.cosine_factor(50, 100, 0.02) == pytest.approx(0.02 + 0.98 * 0.5)
    assert fewshot.cosine_factor(100, 100, 0.02) == pytest.approx(0.02)
    assert fewshot.cosine_factor(10_000, 100, 0.02) == pytest.approx(0.02)     # held after the anneal
    t = 0.3
    assert fewshot.cosine_factor(30, 100, 0.1) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * t)) / 2)


def _images(classes=10, per=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (classes, per, 1, 28, 28), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_the_trainer_follows_the_schedule_and_resumes_it(schedule, tmp_path, one_thread):
    cfg = fewshot.default_config("protonet", 5, 1, train_way=5, train_query=3, iterations=12, val_every=0,
                                 meta_lr=4e-3, lr_schedule=schedule, lr_decay_every=8,
                                 lr_decay=0.02 if schedule == "cosine" else 0.5, checkpoint_every=0)
    lrs = []
    t = fewshot.FewShotTrainer(cfg, train_data=_images(), val_data=False, progress=False)
    for it in range(12):
        lrs.append(t.optimizer.param_groups[0]["lr"])
        t.fit(until=it + 1)
    if schedule == "cosine":
        expected = [4e-3 * fewshot.cosine_factor(i, 8, 0.02) for i in range(12)]
    else:
        expected = [4e-3 * 0.5 ** (i // 8) for i in range(12)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    # stopped at 5 and resumed in a new trainer = straight through
    a = fewshot.FewShotTrainer(cfg, train_data=_images(), val_data=False, progress=False, run_dir=tmp_path / "r")
    a.fit(until=5)
    a.save()
    b = fewshot.FewShotTrainer(cfg, train_data=_images(), val_data=False, progress=False, run_dir=tmp_path / "r")
    assert b.iteration == 5
    b.fit()
    for k, v in t.learner.state_dict().items():
        assert torch.equal(v, b.learner.state_dict()[k]), k


def test_default_config_budget_settings_and_bad_names():
    with pytest.raises(ValueError, match="settings must be 'paper' or 'budget'"):
        fewshot.default_config("protonet", settings="fast")
    with pytest.raises(ValueError, match="no budget settings for omniglot 20-way 1-shot"):
        fewshot.default_config("protonet", 20, 1, settings="budget")
    with pytest.raises(ValueError, match="lr_schedule must be"):
        fewshot.default_config("protonet", lr_schedule="linear")
    with pytest.raises(ValueError, match="needs lr_decay_every"):
        fewshot.default_config("protonet", lr_schedule="cosine", lr_decay_every=0)
    table = fewshot.budget_settings()
    for (alg, dataset, n, k), s in table.items():
        cfg = fewshot.default_config(alg, n, k, dataset, settings="budget")
        assert all(getattr(cfg, f) == v for f, v in s.items()), alg
        assert cfg.lr_schedule in ("step", "cosine") and cfg.iterations == s["iterations"]


def test_configs_saved_before_the_schedule_field_still_load_and_resume():
    old = fewshot.default_config("protonet").to_dict()
    del old["lr_schedule"]
    assert fewshot.FewShotConfig.from_dict(old).lr_schedule == "step"


def test_a_budget_schedule_belongs_to_one_registered_learner():
    """fomaml (MAML with first_order pinned) has its own key in MAML's file; a subclass (ANIL has its own,
    MetaGAN none) or a pinned name without a key (foanil) never inherits its parent's searched schedule,
    while the papers' settings are still inherited."""
    table = fewshot.budget_settings()
    maml, fomaml = table[("maml", "omniglot", 5, 1)], table[("fomaml", "omniglot", 5, 1)]
    assert fomaml["first_order"] is True and "first_order" not in maml and fomaml != maml
    cfg = fewshot.default_config("fomaml", settings="budget")
    assert (cfg.algorithm, cfg.first_order, cfg.meta_lr, cfg.iterations) == ("maml", True, fomaml["meta_lr"],
                                                                              fomaml["iterations"])
    assert fewshot.default_config("maml", settings="budget").first_order is False
    for name in ("metagan", "platipus", "pretrain", "foanil"):
        assert not any(k[0] == name for k in table), name
        with pytest.raises(ValueError, match=f"{name} has no budget settings"):
            fewshot.default_config(name, settings="budget")
    assert fewshot.default_config("foanil").meta_lr == fewshot.default_config("anil").meta_lr   # paper: inherited


def test_the_budget_settings_rebuild_the_config_each_budget30_model_was_trained_with():
    """``default_config(name, settings="budget")`` is the raced configuration (the paper's settings with the
    searched schedule on top): every field of each shipped ``…-budget30`` model's config but the run's length
    and bookkeeping (the race bounds the iterations itself and validates outside the trainer)."""
    from metalib.pretrained import manifest
    rows = {k: v for k, v in manifest().items() if k.endswith("-omniglot-5w1s-budget30")}
    assert len(rows) >= 8, sorted(rows)
    for name, row in rows.items():
        learner = name[: -len("-omniglot-5w1s-budget30")]
        cfg = fewshot.default_config(learner, settings="budget").to_dict()
        shipped = fewshot.FewShotConfig.from_dict(row["config"]).to_dict()   # older manifests: the legacy layout
        diff = {k: (cfg.get(k), shipped.get(k)) for k in set(cfg) | set(shipped)
                if cfg.get(k) != shipped.get(k) and k not in ("iterations", "val_every", "checkpoint_every", "seed")}
        assert not diff, (name, diff)
        assert cfg["iterations"] == fewshot.budget_settings()[(learner, "omniglot", 5, 1)]["iterations"]

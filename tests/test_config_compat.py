"""One typed config per learner (issue #23): what a config holds, what the command line offers, and
that configs saved before (the flat union + ``options``) still load — the real shipped files included."""
from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch

import metalib
from metalib import algorithms, fewshot
from metalib import checkpoint as ckpt
from metalib.algorithms.settings import LEGACY_FIELDS, FewShotConfig, config_class, learner_fields
from metalib.pretrained import WEIGHTS_DIR

MANIFEST = json.loads((WEIGHTS_DIR / "MANIFEST.json").read_text())
SHIPPED = sorted(n for n, e in MANIFEST.items() if "config" in e)
RUN_FIELDS = {f.name for f in dataclasses.fields(FewShotConfig)}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads_with_its_settings_and_weights(name):
    """Each manifest row (written before per-learner configs) converts, and its learner is the one the
    row describes: every legacy field and option the learner takes reaches it unchanged."""
    saved = MANIFEST[name]["config"]
    config = FewShotConfig.from_dict(saved)
    assert type(config) is config_class(saved["algorithm"])
    now = config.to_dict()
    for k, v in {**saved, **(saved.get("options") or {})}.items():
        if k == "options" or (k in LEGACY_FIELDS and k not in now) or k in config.unused:
            continue
        assert now[k] == v, (k, now[k], v)
    assert FewShotConfig.from_dict(now) == config                 # today's format round-trips
    learner = metalib.pretrained(name)                             # builds from the row, loads the shipped file
    assert type(learner) is algorithms.entry(saved["algorithm"]).cls
    for k, v in config.learner_settings().items():
        if hasattr(learner, k) and not isinstance(getattr(learner, k), (torch.Tensor, torch.nn.Module)):
            assert getattr(learner, k) in (v, tuple(v) if isinstance(v, list) else v), (k, getattr(learner, k), v)


@pytest.mark.parametrize("algorithm", algorithms.available())
def test_a_config_holds_only_what_its_learner_takes(algorithm):
    """The printed/saved config is the run's fields and the learner's own: each of those an ``__init__``
    argument (or ``test_inner_steps``, the test-time steps), none of another learner's."""
    config = fewshot.default_config(algorithm, iterations=1)
    own = set(config.to_dict()) - RUN_FIELDS
    assert own == set(config.learner_settings())
    params = inspect.signature(config.learner_class.__init__).parameters
    assert own - {"test_inner_steps"} <= set(params), own - set(params)
    if algorithm in ("matching", "protonet", "relation", "snail", "mann"):
        assert not own & {"inner_lr", "outer_lr", "inner_optimizer", "first_order", "inner_steps"}
    assert not set(config.unused) & set(config.to_dict())
    fewshot.build_learner(config)


def test_run_fields_a_learner_ignores_are_not_printed_and_not_settable():
    """Reptile steps SGD at outer_lr: no Adam rate, no Adam schedule in its printed config, and none settable."""
    assert not {"meta_lr", "lr_decay_every", "lr_decay", "lr_schedule"} & set(fewshot.default_config("reptile").to_dict())
    with pytest.raises(ValueError, match="reptile does not use meta_lr"):
        fewshot.default_config("reptile", meta_lr=0.01)


def test_learner_fields_never_shadow_run_fields():
    for name in algorithms.available():
        cls = config_class(name)
        assert not {f.name for f in learner_fields(cls)} & RUN_FIELDS
        for f in learner_fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text (it is a command-line flag)"


def test_the_issue_options_are_flags_of_the_training_script(train_fewshot_cli):
    args = train_fewshot_cli.parse(["--algorithm", "matching", "--fce", "--memory-slots", "64", "--read-heads", "2",
                      "--filters", "32", "--alpha-init", "[0.01,0.2]", "--init-lambda", "20", "--batching", "loop"])
    assert (args.fce, args.memory_slots, args.read_heads, args.filters, args.alpha_init, args.init_lambda,
            args.batching) == (True, 64, 2, 32, [0.01, 0.2], 20, "loop")
    cfg = fewshot.default_config("metasgd", alpha_init=[0.01, 0.2], iterations=1)
    assert fewshot.build_learner(cfg).alpha_init == (0.01, 0.2)
    assert fewshot.build_learner(fewshot.default_config("mann", memory_slots=64, read_heads=2, iterations=1)).read_heads == 2
    assert fewshot.build_learner(fewshot.default_config("r2d2", init_lambda=20.0, iterations=1)) is not None


def legacy(config: FewShotConfig) -> dict:
    """``config`` as it was saved before issue #23: every learner field at the top (0 / False / "adam"
    where the learner has none) and the learner's other settings in ``options``."""
    d = {k: v for k, v in config.to_dict().items() if k in RUN_FIELDS}
    own = config.learner_settings()
    old_default = dict(inner_lr=0.0, inner_steps=0, test_inner_steps=0, first_order=False, outer_lr=0.0,
                       outer_lr_final=0.0, inner_optimizer="adam")
    d.update({k: own.get(k, v) for k, v in old_default.items()})
    d["options"] = json.loads(json.dumps({k: v for k, v in own.items() if k not in LEGACY_FIELDS}))
    return d


def test_a_run_saved_before_per_learner_configs_resumes(tmp_path):
    """A run folder whose config.json and last.pt/best.pt hold the old format resumes (and is evaluated)
    with today's config: no 'config differs', no 'not a checkpoint of this run'."""
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(8, 4, 1, 16, 16, generator=g) * 255).to(torch.uint8)
    cfg = fewshot.default_config("maml", 3, 1, dataset="custom", image_size=16, hidden=4, iterations=2, meta_batch=2,
                                 train_query=2, test_query=2, val_every=2, val_episodes=2, checkpoint_every=1,
                                 inner_steps=1, batching="loop")
    trainer = fewshot.FewShotTrainer(cfg, data, data, run_dir=tmp_path, progress=False)
    trainer.fit()
    old = legacy(cfg)
    assert old["options"] == {"batching": "loop", "recompute_steps": False, "bn_mode": "transductive"}
    ckpt.save_config(tmp_path / "config.json", old)
    for f in ("last.pt", "best.pt"):
        state = ckpt.load_checkpoint(tmp_path / f)
        ckpt.save_checkpoint(tmp_path / f, {**state, "config": old})
    longer = fewshot.copy_config(cfg, iterations=3)
    again = fewshot.FewShotTrainer(longer, data, data, run_dir=tmp_path, progress=False, longer=True)
    assert again.iteration == 2
    again.fit()
    assert again.iteration == 3
    learner, loaded = fewshot.load_run(tmp_path)
    assert loaded == longer and learner.batching == "loop"
    # a real difference is still refused
    with pytest.raises(ckpt.ConfigMismatchError, match="inner_lr"):
        fewshot.FewShotTrainer(fewshot.copy_config(longer, inner_lr=0.5), data, data, run_dir=tmp_path, progress=False)

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
        if hasattr(learner, k) and v is not None and not isinstance(getattr(learner, k), (torch.Tensor, torch.nn.Module)):
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


#: constructor arguments that are no config field (issue #23's audit: none left)
NOT_IN_CONFIG: set = set()
#: what no config sets: the network, the task loss (Python API) and the test-time steps (``test_inner_steps``)
NOT_SETTINGS = {"self", "model", "encoder", "loss_fn", "eval_steps"}


@pytest.mark.parametrize("algorithm", algorithms.available())
def test_every_constructor_argument_is_a_config_field(algorithm):
    """Whatever a learner's ``__init__`` takes (but the network and the loss) is a field of its config —
    a command-line flag, saved with the run — or one its config declares ``unused`` (Pretrain's
    ``first_order``: it has no meta-gradient through an inner loop)."""
    cls, cfg = algorithms.entry(algorithm).cls, config_class(algorithm)
    params = set(inspect.signature(cls.__init__).parameters) - NOT_SETTINGS - set(cfg.unused)
    missing = params - {f.name for f in learner_fields(cfg)} - set(cls.config_keys)
    known = {p for a, p in NOT_IN_CONFIG if a == algorithm}
    assert missing == known, missing ^ known  # the list above stays true: a fixed one leaves it


@pytest.mark.parametrize("algorithm", algorithms.available())
def test_the_printed_config_holds_only_what_the_learner_uses(algorithm):
    """Nothing printed that the learner does not use: the Conv-4 width ``hidden`` only where the network
    depends on it (not MANN's raw pixels), Adam's rate and schedule only where the outer optimiser runs
    at ``meta_lr`` (not Reptile's SGD at ``outer_lr``)."""
    config = fewshot.default_config(algorithm, iterations=1)
    printed, cls = config.to_dict(), config.learner_class
    size = lambda h: sum(p.numel() for p in cls.default_model(1, 28, h, 5).parameters())  # noqa: E731
    assert ("hidden" in printed) == (size(8) != size(16))
    at_meta_lr = fewshot.build_learner(config).outer_optimizer(0.123).param_groups[0]["lr"] == 0.123
    schedule = {"meta_lr", "lr_decay_every", "lr_decay", "lr_schedule"}
    assert (schedule & set(printed)) == (schedule if at_meta_lr else set())


def test_pretrain_ignores_first_order_and_metasgd_inner_lr():
    """The settings declared ``unused`` are: Pretrain's meta-gradient is the same either way (so
    ``first_order`` is not printed), and Meta-SGD refuses MAML's ``inner_lr`` (its α are learned)."""
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    y = torch.arange(3).repeat(2, 2)
    grads = []
    for fo in (False, True):
        torch.manual_seed(0)
        learner = algorithms.get("pretrain", torch.nn.Linear(4, 3).double(), first_order=fo, inner_steps=1)
        learner.meta_gradient((x, y, x, y))
        grads.append([p.grad.clone() for p in learner.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert not {"first_order", "recompute_steps"} & set(fewshot.default_config("pretrain", iterations=1).to_dict())
    with pytest.raises(ValueError, match="pretrain does not use first_order"):
        fewshot.default_config("pretrain", first_order=True)
    with pytest.raises(ValueError, match="metasgd does not use inner_lr"):
        fewshot.default_config("metasgd", inner_lr=0.5)
    with pytest.raises(ValueError, match="mann does not use hidden"):
        fewshot.default_config("mann", hidden=32)


def test_anil_head_and_relation_feature_shape_are_flags(train_fewshot_cli):
    """ANIL's head prefix and Relation Networks' feature-map shape, from the command line to the learner."""
    args = train_fewshot_cli.parse(["--algorithm", "anil", "--head", "head.weight", "--feature-shape", "[64,5,5]"])
    assert (args.head, args.feature_shape) == ("head.weight", [64, 5, 5])
    anil = fewshot.build_learner(fewshot.default_config("anil", head=args.head, iterations=1))
    assert anil.head_prefixes == ("head.weight",) and anil.inner_params(anil.initial_params(), {})[0].keys() == {"head.weight"}
    relation = fewshot.build_learner(fewshot.default_config("relation", feature_shape=args.feature_shape, iterations=1))
    assert relation.feature_shape == (64, 5, 5)
    with pytest.raises(ValueError, match=r"feature_shape=\(64, 4, 4\) but the encoder's feature maps are \(64, 5, 5\)"):
        fewshot.build_learner(fewshot.default_config("relation", feature_shape=[64, 4, 4], iterations=1))
    with pytest.raises(ValueError, match="no parameter of the model starts with 'body.'"):
        fewshot.build_learner(fewshot.default_config("anil", head="body.", iterations=1))


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

"""One input contract for every registered learner (issue 24): each bad input below gets the same one-line
error from ``train_step``, ``meta_backward`` and ``predict`` of EVERY learner in
``metalib.algorithms.available()`` — a new learner is covered by registering it — and is refused before
any update (no gradient, weights unchanged). The contract itself is ``Learner.check_batch`` /
``Learner.check_episode`` (metalib/algorithms/base.py), enforced around every subclass's methods."""
import pytest
import torch

from metalib import NonFiniteLossError, algorithms
from metalib.algorithms.settings import config_class
from metalib.fewshot import build_learner, default_config

N, K, Q, T, SIZE = 3, 2, 2, 2, 24
SMALL = {"mann": dict(controller_size=8, memory_slots=6, memory_size=4, read_heads=2),
         "lstm-baseline": dict(controller_size=8), "snail": dict(filters=8, attention=((4, 2), (4, 2), (4, 2)))}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny(name, n_way=None):
    """A tiny learner of each kind, built as a few-shot run builds it (Conv-4 of width 4 on 24x24 images)."""
    torch.manual_seed(0)
    base = dict(n_way=n_way or N, k_shot=K, dataset="custom", image_size=SIZE, hidden=4, iterations=1)
    if "hidden" in config_class(name).unused:  # MANN, the LSTM baseline: raw pixels, no Conv-4 width
        del base["hidden"]
    try:
        cfg = default_config(name, inner_lr=0.1, inner_steps=1, test_inner_steps=1, **base)
    except (TypeError, ValueError):  # no inner_lr (metric, model-based) or a learned one (Meta-SGD)
        cfg = default_config(name, **base)
    if name in SMALL:
        cfg.options = {**(cfg.options or {}), **SMALL[name]}
    return build_learner(cfg)


def episodes(n=N):
    g = torch.Generator().manual_seed(0)
    x_s, x_q = torch.rand(T, n * K, 1, SIZE, SIZE, generator=g), torch.rand(T, n * Q, 1, SIZE, SIZE, generator=g)
    y_s = torch.arange(n).repeat_interleave(K).expand(T, -1).clone()
    y_q = torch.arange(n).repeat_interleave(Q).expand(T, -1).clone()
    return x_s, y_s, x_q, y_q


def minus_100_but_two(y):
    y = y.clone()
    y.view(-1)[2:] = -100  # all query labels but two ignored: cross_entropy would train on the two
    return y


def inf_pixel(x):
    x = x.clone()
    x.view(-1)[7] = float("inf")
    return x


def nan_pixel(x):
    x = x.clone()
    x.view(-1)[3] = float("nan")
    return x


LABELS_OUT = r"labels must (lie in \[0, 3\) for this 3-way head|be 0\.\.N-1)"
# (name, which tensor of (x_s, y_s, x_q, y_q) is broken, how, exception, message)
BAD = [
    ("-100 in most query labels", 3, minus_100_but_two, ValueError, "-100 is cross_entropy's ignore_index"),
    ("-100 in a support label", 1, lambda y: torch.where(y == 0, torch.full_like(y, -100), y), ValueError,
     "-100 is cross_entropy's ignore_index"),
    ("support labels out of range", 1, lambda y: y + 3, ValueError, LABELS_OUT),
    ("query labels out of range", 3, lambda y: y + 3, ValueError, r"labels must lie in \[0, 3\)"),
    ("float labels", 1, lambda y: y.float(), TypeError, "labels must be an integer tensor"),
    ("bool labels", 1, lambda y: y > 0, TypeError, "labels must be an integer tensor"),
    ("int32 labels", 1, lambda y: y.int(), TypeError, "torch.int64"),
    ("int32 query labels", 3, lambda y: y.int(), TypeError, "torch.int64"),
    ("float64 images", 0, lambda x: x.double(), TypeError, "torch.float64 but the learner's weights torch.float32"),
    ("uint8 images", 0, lambda x: (x * 255).to(torch.uint8), TypeError, "torch.uint8 but the learner's weights"),
    ("empty support", "s", lambda x: x[:, :0], ValueError, "the support set is empty"),
    ("zero-size queries", "q", lambda x: x[:, :0], ValueError, "the query set is empty"),
    ("an inf pixel in the support", 0, inf_pixel, NonFiniteLossError, "support inputs contain NaN or inf"),
    ("a NaN pixel in the queries", 2, nan_pixel, NonFiniteLossError, "query inputs contain NaN or inf"),
    ("inputs on another device", 0, lambda x: x.to("meta"), ValueError, "on meta but the learner's weights on cpu"),
]


def broken(where, how):
    b = list(episodes())
    if where == "s":
        b[0], b[1] = how(b[0]), how(b[1])
    elif where == "q":
        b[2], b[3] = how(b[2]), how(b[3])
    else:
        b[where] = how(b[where])
    return tuple(b)


def snapshot(learner):
    return [p.detach().clone() for p in learner.parameters()]


@pytest.mark.parametrize("name", algorithms.available())
@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_every_learner_refuses_bad_input_with_one_line(name, case):
    what, where, how, exc, match = case
    learner = tiny(name)
    batch = broken(where, how)
    before = snapshot(learner)
    training = not (where == "q" and not learner.needs_query)  # MANN and the LSTM train on the support alone
    if training:
        opt = learner.outer_optimizer(1e-3)
        with pytest.raises(exc, match=match) as err:
            learner.train_step(batch, opt)
        assert "\n" not in str(err.value)
        with pytest.raises(exc, match=match):
            learner.meta_backward(batch)
        assert all(p.grad is None for p in learner.parameters())  # refused before any work
        assert all(torch.equal(a, b) for a, b in zip(before, learner.parameters()))
    if where == 3:
        return  # predict sees no query labels
    x_s, y_s, x_q, _ = batch
    with pytest.raises(exc, match=match) as err:
        learner.predict(x_s, y_s, x_q)  # a batch of tasks
    assert "\n" not in str(err.value)
    with pytest.raises(exc, match=match):
        learner.predict(x_s[0], y_s[0], x_q[0])  # one task


@pytest.mark.parametrize("name", algorithms.available())
def test_every_learner_accepts_the_good_batch_and_checks_n_against_its_head(name):
    learner = tiny(name)
    x_s, y_s, x_q, y_q = episodes()
    out = learner.train_step((x_s, y_s, x_q, y_q), learner.outer_optimizer(1e-3))
    assert torch.isfinite(out["loss"])
    assert learner.predict(x_s, y_s, x_q).shape == (T, N * Q, N)
    if learner.fixed_way is not None:
        with pytest.raises(ValueError, match="3-way"):
            learner.predict(x_s, y_s, x_q, n_way=5)
    with pytest.raises(ValueError, match="task dimension"):
        learner.meta_backward((x_s[0], y_s[0], x_q[0], y_q[0]))


@pytest.mark.parametrize("name", algorithms.available())
def test_zero_tasks_and_classes_without_support_get_one_short_line(name):
    learner = tiny(name)
    x_s, y_s, x_q, y_q = episodes()
    with pytest.raises(ValueError, match="the batch has no tasks"):
        learner.meta_backward((x_s[:0], y_s[:0], x_q[:0], y_q[:0]))
    with pytest.raises(ValueError, match="the batch has no tasks"):
        learner.predict(x_s[:0], y_s[:0], x_q[:0])
    with pytest.raises(ValueError, match=r"3-way|class\(es\) \[3, 4, 5, 6, 7\]\.\.\. \(999997 of 1000000\)") as err:
        learner.predict(x_s, y_s, x_q, n_way=10**6)  # (R2D2 gave a million columns of made-up logits)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("name", ["pretrain", "lstm-meta", "snail", "mann", "lstm-baseline", "maml"])
def test_a_float64_model_refuses_float32_data(name):
    learner = tiny(name).double()
    with pytest.raises(TypeError, match="torch.float32 but the learner's weights torch.float64"):
        learner.meta_backward(episodes())


@pytest.mark.parametrize("name", ["mann", "lstm-baseline"])
def test_meta_train_stops_on_an_inf_pixel_without_blaming_the_learning_rate(name):
    from metalib.training import meta_train
    learner = tiny(name)
    before = snapshot(learner)
    batch = broken(0, inf_pixel)
    with pytest.raises(NonFiniteLossError, match="support inputs contain NaN or inf") as err:
        meta_train(learner, lambda: batch, iterations=2, progress=False)
    assert "learning rate" not in str(err.value)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.parameters()))


def test_the_deferred_loop_names_bad_inputs_not_the_learning_rate():
    """On a GPU the loop checks every ``check_every`` iterations without a sync: an inf pixel is found
    there, the run rolled back, and the message names the data (CPU here, as tests/test_sync_free.py)."""
    from _nets import synthetic_images
    from metalib.fewshot import FewShotTrainer, TrainingDiverged
    cfg = default_config("protonet", n_way=3, k_shot=1, dataset="custom", image_size=16, hidden=4, iterations=4,
                         meta_batch=2, train_query=2, test_query=2, val_every=0, checkpoint_every=0, seed=3)
    t = FewShotTrainer(cfg, synthetic_images(10, per_class=6, seed=0), synthetic_images(6, per_class=6, seed=1),
                       progress=False, deferred=True, check_every=4)
    good, calls = t.loop.sample_batch, []

    def sample():
        calls.append(1)
        b = list(good())
        if len(calls) == 3:
            b[0] = inf_pixel(b[0])
        return tuple(b)

    t.loop.sample_batch = sample
    with pytest.raises(TrainingDiverged, match="non-finite at iteration 2: its inputs held NaN or inf") as err:
        t.fit()
    assert "probably too large" not in str(err.value)
    assert "learning rate" not in str(err.value) and err.value.bad_data  # (FewShotTrainer added its hint: #24)


# ----------------------------------------------------------------------------- the rest of the public surface (#24)
PUBLIC = [(name, method) for name in algorithms.available() for method in ("meta_loss", "task_losses", "adapt")
          if hasattr(algorithms.entry(name).cls, method)]


@pytest.mark.parametrize("name, method", PUBLIC, ids=[f"{n}-{m}" for n, m in PUBLIC])
@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_meta_loss_task_losses_and_adapt_keep_the_same_contract(name, method, case):
    """``meta_loss``, ``task_losses`` (a batch) and ``adapt`` (one task's support set) are public too: the
    same one-line errors as ``train_step``/``predict``, before any work (they gave raw torch errors, accepted
    int32/bool/uint8 and blamed an inf pixel on the learning rate)."""
    what, where, how, exc, match = case
    learner = tiny(name)
    x_s, y_s, x_q, y_q = batch = broken(where, how)
    if method == "adapt":
        if where not in (0, 1, "s"):
            return  # adapt sees the support set alone
        call = lambda: learner.adapt(x_s[0], y_s[0])  # noqa: E731
    else:
        call = lambda: getattr(learner, method)(batch)  # noqa: E731
    with pytest.raises(exc, match=match) as err:
        call()
    assert "\n" not in str(err.value) and "learning rate" not in str(err.value)
    assert all(p.grad is None for p in learner.parameters())


@pytest.mark.parametrize("name", algorithms.available())
def test_a_3_way_batch_on_a_5_way_learner(name):
    """Decided (#24): a learner with a fixed N (a linear head, SNAIL's output) refuses a task with fewer
    classes in one line, in training and in predict alike (it trained such a batch with two dead outputs but
    refused it in predict(n_way=3)); the sequence learners (MANN, the LSTM baseline), which predict each
    label before it is shown, accept it by design; the metric learners treat it as the 3-way task it is."""
    learner = tiny(name, n_way=5)
    x_s, y_s, x_q, y_q = batch = episodes(3)
    before = snapshot(learner)
    if learner.fixed_way == 5 and learner.needs_query:
        for call in (lambda: learner.train_step(batch, learner.outer_optimizer(1e-3)),
                     lambda: learner.meta_backward(batch), lambda: learner.predict(x_s, y_s, x_q),
                     lambda: learner.predict(x_s[0], y_s[0], x_q[0])):
            with pytest.raises(ValueError, match=r"class\(es\) \[3, 4\] \(2 of 5\) have no examples in the support set"
                                                 r".*classifies 5-way tasks only") as err:
                call()
            assert "\n" not in str(err.value)
        assert all(torch.equal(a, b) for a, b in zip(before, learner.parameters()))
        with pytest.raises(ValueError, match="5-way"):
            learner.predict(x_s, y_s, x_q, n_way=3)
        return
    assert torch.isfinite(learner.train_step(batch, learner.outer_optimizer(1e-3))["loss"])
    assert learner.predict(x_s, y_s, x_q).shape == (T, 3 * Q, learner.fixed_way or 3)


@pytest.mark.parametrize("name", algorithms.available())
def test_a_class_missing_from_the_support_is_blamed_on_the_support(name):
    """Task 0's support lacks class 2 but its queries hold it: the message names the support set (ProtoNet
    said 'query labels must lie in [0, 2)')."""
    learner = tiny(name)
    x_s, y_s, x_q, y_q = episodes()
    y_s[0][y_s[0] == 2] = 0
    if not learner.needs_query:  # the sequence learners: a label before its first example, by design
        assert torch.isfinite(learner.meta_backward((x_s, y_s, x_q, y_q)))
        return
    calls = [lambda: learner.meta_backward((x_s, y_s, x_q, y_q)), lambda: learner.predict(x_s, y_s, x_q)]
    if learner.fixed_way is None:  # task 0 alone is a 2-way task (predict has no query labels)
        assert learner.predict(x_s[0], y_s[0], x_q[0]).shape == (N * Q, 2)
    else:
        calls.append(lambda: learner.predict(x_s[0], y_s[0], x_q[0]))
    for call in calls:
        with pytest.raises(ValueError, match=r"class\(es\) \[2\].*support set") as err:
            call()
        assert "\n" not in str(err.value)

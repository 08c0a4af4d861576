"""Bad input gets a clear error that names the problem, never a silent wrong answer."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalib import MAML, NonFiniteLossError, ProtoNet, Reptile, models


def sin_batch(T=2, k=5, q=5):
    return (torch.randn(T, k, 1), torch.randn(T, k, 1), torch.randn(T, q, 1), torch.randn(T, q, 1))


def test_mismatched_support_shapes():
    x_s, y_s, x_q, y_q = sin_batch()
    with pytest.raises(ValueError, match="support inputs"):
        MAML(models.sinusoid_mlp()).meta_loss((x_s, y_s[:, :3], x_q, y_q), F.mse_loss)


def test_mismatched_support_and_query_shapes():
    x_s, y_s, x_q, y_q = sin_batch()
    with pytest.raises(ValueError, match="query inputs"):
        MAML(models.sinusoid_mlp()).meta_loss((x_s, y_s, torch.randn(2, 5, 2), y_q), F.mse_loss)
    with pytest.raises(ValueError, match="tasks"):
        MAML(models.sinusoid_mlp()).meta_loss((x_s, y_s, x_q[:1], y_q[:1]), F.mse_loss)


def test_missing_task_dimension():
    x_s, y_s, x_q, y_q = sin_batch()
    with pytest.raises(ValueError, match="task dimension"):
        MAML(models.sinusoid_mlp()).meta_loss((x_s[0, :, 0], y_s[0, :, 0], x_q[0, :, 0], y_q[0, :, 0]), F.mse_loss)


def test_not_a_batch():
    with pytest.raises(TypeError, match="tuple"):
        MAML(models.sinusoid_mlp()).meta_loss(torch.randn(2, 5, 1), F.mse_loss)
    with pytest.raises(TypeError, match="torch.Tensor"):
        MAML(models.sinusoid_mlp()).meta_loss(([1.0], [1.0], [1.0], [1.0]), F.mse_loss)


def test_labels_outside_n_way():
    x = torch.randn(1, 4, 3)
    y = torch.tensor([[0, 1, 2, 5]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ProtoNet(nn.Identity()).logits(x, y, x, n_way=3)
    with pytest.raises(ValueError, match="labels"):
        ProtoNet(nn.Identity()).meta_loss((x, torch.tensor([[0, 1, 0, 1]]), x, torch.tensor([[0, 1, 2, 0]])), n_way=2)
    with pytest.raises(ValueError, match="labels"):
        ProtoNet(nn.Identity()).logits(x, torch.tensor([[0, -1, 0, 1]]), x)


def test_float_labels_are_rejected():
    x = torch.randn(1, 4, 3)
    with pytest.raises(TypeError, match="integer"):
        ProtoNet(nn.Identity()).logits(x, torch.zeros(1, 4), x)


def test_k_shot_below_one():
    x = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match="no support examples"):
        ProtoNet(nn.Identity()).logits(x, torch.tensor([[0, 0, 2, 2]]), x, n_way=3)
    x_s, y_s, x_q, y_q = sin_batch(k=0)
    with pytest.raises(ValueError, match="empty"):
        MAML(models.sinusoid_mlp()).meta_loss((x_s, y_s, x_q, y_q), F.mse_loss)


def test_non_finite_inner_loss():
    x_s, y_s, x_q, y_q = sin_batch()
    y_s[0, 0, 0] = float("nan")
    for batching in ("loop", "vmap"):
        with pytest.raises(NonFiniteLossError, match="inner-loop"):
            MAML(models.sinusoid_mlp(), batching=batching).meta_loss((x_s, y_s, x_q, y_q), F.mse_loss)
    with pytest.raises(NonFiniteLossError, match="inner-loop"):
        Reptile(models.sinusoid_mlp()).meta_step((x_s, y_s, x_q, y_q), F.mse_loss)
    with pytest.raises(ValueError):  # NonFiniteLossError is a ValueError
        MAML(models.sinusoid_mlp()).adapt(x_s[0], y_s[0], F.mse_loss)


def test_divergent_inner_lr_is_reported_not_silent():
    x_s, y_s, x_q, y_q = sin_batch()
    y_s = y_s * 1e3
    with pytest.raises(NonFiniteLossError):
        MAML(models.sinusoid_mlp(), inner_lr=1e6, inner_steps=5, batching="loop").meta_loss((x_s, y_s, x_q, y_q), F.mse_loss)


@pytest.mark.parametrize("kwargs,exc", [
    (dict(inner_lr=-1.0), ValueError), (dict(inner_lr=float("nan")), ValueError), (dict(inner_lr="0.1"), TypeError),
    (dict(inner_steps=-1), ValueError), (dict(inner_steps=1.5), TypeError), (dict(batching="gpu"), ValueError),
    (dict(bn_mode="eval"), ValueError),
])
def test_bad_hyperparameters(kwargs, exc):
    with pytest.raises(exc):
        MAML(models.sinusoid_mlp(), **kwargs)


def test_bad_model_and_loss():
    with pytest.raises(TypeError, match="nn.Module"):
        MAML(lambda x: x)
    with pytest.raises(TypeError, match="nn.Module"):
        ProtoNet("conv4")
    with pytest.raises(TypeError, match="loss_fn"):
        MAML(models.sinusoid_mlp()).meta_loss(sin_batch(), "mse")


def test_conv4_wrong_image_shape():
    with pytest.raises(ValueError, match=r"\[n, 1, H, W\]"):
        models.Conv4(1, 5)(torch.randn(2, 3, 28, 28))


# ----------------------------------------------------------------------------- one clear line, before any work
def conv_task(n_way=3, k=2, q=2, T=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x_s = torch.rand(T, n_way * k, 1, 16, 16, generator=g, dtype=dtype)
    x_q = torch.rand(T, n_way * q, 1, 16, 16, generator=g, dtype=dtype)
    y_s = torch.arange(n_way).repeat_interleave(k).expand(T, -1).clone()
    y_q = torch.arange(n_way).repeat_interleave(q).expand(T, -1).clone()
    return x_s, y_s, x_q, y_q


def head_learners():
    torch.manual_seed(0)
    net = models.Conv4(1, 3, hidden=4, image_size=16)
    return [MAML(net, inner_lr=0.1), Reptile(net, inner_lr=0.01, inner_steps=1)]


@pytest.mark.parametrize("bad, match", [
    (lambda y: y + 3, r"labels must lie in \[0, 3\) for this 3-way head; found 3..5"),
    (lambda y: y.float(), "labels must be an integer tensor"),
    (lambda y: torch.where(y == 0, torch.full_like(y, -100), y), "-100 is cross_entropy's ignore_index"),
])
def test_classification_labels_are_checked_against_the_head(bad, match):
    x_s, y_s, x_q, y_q = conv_task()
    for learner in head_learners():
        with pytest.raises((ValueError, TypeError), match=match):
            learner.meta_backward((x_s, bad(y_s), x_q, y_q))
        with pytest.raises((ValueError, TypeError), match=match):
            learner.meta_backward((x_s, y_s, x_q, bad(y_q)))
        with pytest.raises((ValueError, TypeError), match=match):
            learner.adapt(x_s[0], bad(y_s[0]))
        assert all(p.grad is None for p in learner.parameters())  # refused before any work


def test_dtype_and_device_mismatches_name_both():
    x_s, y_s, x_q, y_q = conv_task(dtype=torch.float64)
    for learner in head_learners():
        with pytest.raises(TypeError, match="torch.float64 but the learner's weights torch.float32"):
            learner.meta_backward((x_s, y_s, x_q, y_q))
    protonet = ProtoNet(models.Conv4(1, None, hidden=4, image_size=16))
    with pytest.raises(TypeError, match="torch.float64 but the learner's weights torch.float32"):
        protonet.predict(x_s, y_s, x_q)
    with pytest.raises(ValueError, match="on meta but the learner's weights on cpu"):
        protonet.predict(x_s.to("meta").float(), y_s, x_q)


def test_protonet_with_nan_images_raises_nonfinite():
    x_s, y_s, x_q, y_q = conv_task()
    x_s[0, 0, 0, 0, 0] = float("nan")
    protonet = ProtoNet(models.Conv4(1, None, hidden=4, image_size=16))
    with pytest.raises(NonFiniteLossError):
        protonet.meta_loss((x_s, y_s, x_q, y_q))


def test_adapt_refuses_a_whole_batch_and_an_empty_support_set():
    x_s, y_s, x_q, y_q = sin_batch(T=3)
    maml = MAML(models.sinusoid_mlp(), loss_fn=F.mse_loss)
    with pytest.raises(ValueError, match="adapt takes one task.*a batch of 3 tasks"):
        maml.adapt(x_s, y_s)
    cx_s, cy_s, _, _ = conv_task()
    for learner in head_learners():
        with pytest.raises(ValueError, match="adapt takes one task"):
            learner.adapt(cx_s, cy_s)
    with pytest.raises(ValueError, match="the support set is empty"):
        maml.adapt(x_s[0, :0], y_s[0, :0])


def test_a_non_scalar_loss_is_named():
    x_s, y_s, x_q, y_q = sin_batch()
    per_point = lambda p, y: F.mse_loss(p, y, reduction="none")  # noqa: E731
    for batching in ("loop", "vmap"):
        with pytest.raises(ValueError, match="loss_fn must return a scalar"):
            MAML(models.sinusoid_mlp(), batching=batching).meta_loss((x_s, y_s, x_q, y_q), per_point)


def test_labels_with_a_gap_name_the_gap():
    x_s, y_s, x_q, _ = conv_task(n_way=5, k=1, T=1)
    y = torch.tensor([[0, 1, 2, 3, 7]])
    with pytest.raises(ValueError, match=r"got labels \[0, 1, 2, 3, 7\] \(no 4, 5, 6\)"):
        ProtoNet(models.Conv4(1, None, hidden=4, image_size=16)).predict(x_s, y, x_q)

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

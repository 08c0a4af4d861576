"""Prototypical Networks against distances computed by hand."""
import pytest
import torch
from torch import nn

from metalib import ProtoNet
from metalib.algorithms import prototypes


def test_logits_are_negative_squared_distances_to_class_means():
    x_s = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    y_s = torch.tensor([0, 0, 1, 1])
    x_q = torch.tensor([[1.0, 1.0], [3.0, 5.0]])
    logits = ProtoNet(nn.Identity()).logits(x_s, y_s, x_q, n_way=2)
    # prototypes: c0 = (1, 0), c1 = (0, 5)
    expected = -torch.tensor([[0 + 1, 1 + 16], [4 + 25, 9 + 0]], dtype=torch.float32)
    torch.testing.assert_close(logits, expected)


def test_batched_logits_equal_per_task_logits():
    torch.manual_seed(0)
    enc = nn.Linear(3, 4)
    x_s, x_q = torch.randn(2, 6, 3), torch.randn(2, 5, 3)
    y_s = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(2, 1)
    net = ProtoNet(enc)
    batched = net.logits(x_s, y_s, x_q)
    for t in range(2):
        torch.testing.assert_close(batched[t], net.logits(x_s[t], y_s[t], x_q[t]))


def test_loss_is_invariant_to_the_order_of_classes():
    torch.manual_seed(1)
    net = ProtoNet(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4)))
    x_s, x_q = torch.randn(1, 9, 3), torch.randn(1, 6, 3)
    y_s = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2]])
    y_q = torch.tensor([[0, 1, 2, 2, 1, 0]])
    loss = net.meta_loss((x_s, y_s, x_q, y_q))
    perm = torch.tensor([2, 0, 1])  # class c is called perm[c]
    loss_perm = net.meta_loss((x_s, perm[y_s], x_q, perm[y_q]))
    torch.testing.assert_close(loss, loss_perm)
    # ... and to shuffling the support examples
    order = torch.randperm(9)
    torch.testing.assert_close(loss, net.meta_loss((x_s[:, order], y_s[:, order], x_q, y_q)))


def test_prototypes_with_unequal_shots_are_class_means():
    z = torch.tensor([[1.0], [3.0], [10.0]])
    y = torch.tensor([0, 0, 1])
    torch.testing.assert_close(prototypes(z, y, 2), torch.tensor([[2.0], [10.0]]))


def test_loss_is_cross_entropy_of_the_softmax_over_negative_distances():
    x_s = torch.tensor([[[0.0], [10.0]]])
    y_s = torch.tensor([[0, 1]])
    x_q = torch.tensor([[[1.0]]])
    y_q = torch.tensor([[0]])
    loss = ProtoNet(nn.Identity()).meta_loss((x_s, y_s, x_q, y_q))
    d0, d1 = 1.0, 81.0
    expected = -torch.log(torch.exp(torch.tensor(-d0)) / (torch.exp(torch.tensor(-d0)) + torch.exp(torch.tensor(-d1))))
    assert float(loss) == pytest.approx(float(expected), abs=1e-6)

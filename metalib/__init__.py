"""metalib — meta-learning you can read: MAML, Reptile and Prototypical Networks on torch.func.

>>> from metalib import MAML, Reptile, ProtoNet, tasks
"""
from . import fewshot, functional, models, tasks
from .algorithms import MAML, Pretrain, ProtoNet, Reptile
from .batch import TaskBatch
from .functional import NonFiniteLossError
from .pretrained import list_pretrained, pretrained, pretrained_info, pretrained_snapshots
from .version import __version__

__all__ = [
    "MAML", "Reptile", "ProtoNet", "Pretrain", "TaskBatch", "NonFiniteLossError",
    "fewshot", "functional", "models", "tasks", "__version__",
    "pretrained", "pretrained_info", "pretrained_snapshots", "list_pretrained",
]

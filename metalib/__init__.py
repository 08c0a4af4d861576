"""metalib — meta-learning you can read: every algorithm on one functional core (torch.func).

>>> from metalib import MAML, Reptile, ProtoNet, tasks, algorithms
>>> algorithms.available()

The library (this package) never imports the course layer (:mod:`metalib.course`: widgets,
labs, plots, exercises), and ``import metalib`` loads neither matplotlib nor ipywidgets.
"""
from . import algorithms, evaluation, fewshot, functional, models, tasks, training
from .algorithms import MAML, Learner, Pretrain, ProtoNet, Reptile
from .batch import TaskBatch
from .evaluation import evaluate
from .functional import NonFiniteLossError
from .pretrained import list_pretrained, pretrained, pretrained_info, pretrained_snapshots
from .version import __version__

__all__ = [
    "MAML", "Reptile", "ProtoNet", "Pretrain", "Learner", "TaskBatch", "NonFiniteLossError",
    "algorithms", "evaluation", "evaluate", "fewshot", "functional", "models", "tasks", "training", "__version__",
    "pretrained", "pretrained_info", "pretrained_snapshots", "list_pretrained",
]

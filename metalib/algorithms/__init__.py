"""The meta-learning algorithms, one file each, all implementing :class:`Learner` (``base.py``).

>>> from metalib import algorithms
>>> algorithms.available()                       # the registered names
>>> learner = algorithms.get("maml", net, inner_lr=0.4)
>>> algorithms.register("mine", MyLearner)      # a new algorithm: one file + this line
"""
from .base import Learner, available, entry, get, learner_registry, query_metrics, register
from .maml import MAML
from .matching import MatchingNetworks
from .pretrain import Pretrain
from .protonet import ProtoNet, prototypes, squared_distances
from .relation import RelationNetworks
from .reptile import Reptile

__all__ = [
    "Learner", "register", "get", "available", "entry", "learner_registry", "query_metrics",
    "MAML", "Reptile", "ProtoNet", "Pretrain", "prototypes", "squared_distances",
    "MatchingNetworks", "RelationNetworks",
]

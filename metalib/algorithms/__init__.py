"""The meta-learning algorithms, one file each, all implementing :class:`Learner` (``base.py``).

>>> from metalib import algorithms
>>> algorithms.available()                       # the registered names
>>> learner = algorithms.get("maml", net, inner_lr=0.4)
>>> algorithms.register("mine", MyLearner)      # a new algorithm: one file + this line
"""
from .base import Learner, available, entry, get, learner_registry, query_metrics, register
from .anil import ANIL
from .lstm_meta import LSTMMetaLearner
from .maml import MAML
from .mann import MANN, LSTMBaseline
from .matching import MatchingNetworks
from .metagan import MetaGAN
from .metasgd import MetaSGD
from .pretrain import Pretrain
from .platipus import PLATIPUS
from .protonet import ProtoNet, prototypes, squared_distances
from .r2d2 import R2D2, ridge_solution
from .relation import RelationNetworks
from .reptile import Reptile
from .snail import SNAIL

__all__ = [
    "MetaSGD", "ANIL", "R2D2", "ridge_solution", "LSTMMetaLearner",
    "Learner", "register", "get", "available", "entry", "learner_registry", "query_metrics",
    "MAML", "Reptile", "ProtoNet", "Pretrain", "prototypes", "squared_distances",
    "MatchingNetworks", "RelationNetworks",
    "MANN", "LSTMBaseline", "SNAIL",
    "PLATIPUS", "MetaGAN",
]

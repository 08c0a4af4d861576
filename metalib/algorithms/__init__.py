"""The meta-learning algorithms: thin, stateless wrappers over :mod:`metalib.functional`."""
from .maml import MAML
from .pretrain import Pretrain
from .protonet import ProtoNet, prototypes, squared_distances
from .reptile import Reptile

__all__ = ["MAML", "Reptile", "ProtoNet", "Pretrain", "prototypes", "squared_distances"]

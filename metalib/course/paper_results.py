"""The papers' published numbers, in one declarative place: :data:`PAPER_RESULTS` (read by
:mod:`metalib.course.compare` and the labs; nothing registers numbers as a side effect of an import).
Each number is as ``docs/references.md`` lists it (``tests/test_compare.py`` checks that)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class PaperNumber:
    """A paper's published accuracy for one setting, as ``docs/references.md`` lists it: the value as
    printed there, where it stands, how its protocol differs from metalib's (Vinyals / Ravi split, 15
    queries per class, 600 seeded episodes, transductive BatchNorm), and how it was verified (P: the
    paper's table; C: the official code; S: quoted by a later paper)."""

    value: str
    where: str
    protocol: str
    source: str

    def text(self) -> str:
        """``"98.7 ± 0.4 [P]"``."""
        return f"{self.value} [{self.source}]"


_MAML = "Finn et al. 2017, Table 1"
_MAML_O = "MAML's own random character split; K queries per class (1-shot: 1); transductive"
_MAML_M = "K queries per class (1-shot: 1, 5-shot: 5); transductive"
_REPTILE = "Nichol et al. 2018 (arXiv v3), quoted by later papers"
_REPTILE_T = "10,000 test tasks of 1 query per class; transductive, as ours (the non-transductive row: {})"
_PROTO = "Snell et al. 2017"
_PROTO_O = "1,000 test episodes, no interval given; final model retrained on train + val"
_PROTO_M = "same protocol; 30-way (1-shot) / 20-way (5-shot) training episodes"

#: the papers' numbers, keyed by ``(learner.short_name, dataset, n_way, k_shot)``; only those marked P, C
#: or S in ``docs/references.md`` (a number not verified is never printed as the paper's). Every family's
#: entries are here (below: notebooks 02-08, then the metric-based, optimisation-based and model-based ones).
PAPER_RESULTS: Dict[Tuple[str, str, int, int], PaperNumber] = {
    ("MAML", "omniglot", 5, 1): PaperNumber("98.7 ± 0.4", _MAML, _MAML_O, "P"),
    ("MAML", "omniglot", 5, 5): PaperNumber("99.9 ± 0.1", _MAML, _MAML_O.replace("1-shot: 1", "5-shot: 5"), "P"),
    ("MAML", "omniglot", 20, 1): PaperNumber("95.8 ± 0.3", _MAML, _MAML_O, "P"),
    ("MAML", "omniglot", 20, 5): PaperNumber("98.9 ± 0.2", _MAML, _MAML_O.replace("1-shot: 1", "5-shot: 5"), "P"),
    ("MAML", "miniimagenet", 5, 1): PaperNumber("48.70 ± 1.84", _MAML, _MAML_M, "P"),
    ("MAML", "miniimagenet", 5, 5): PaperNumber("63.11 ± 0.92", _MAML, _MAML_M, "P"),
    ("FOMAML", "miniimagenet", 5, 1): PaperNumber("48.07 ± 1.75", _MAML, _MAML_M, "P"),
    ("FOMAML", "miniimagenet", 5, 5): PaperNumber("63.15 ± 0.91", _MAML, _MAML_M, "P"),
    # Reptile: the transductive rows — BatchNorm on the whole query batch, as metalib evaluates (and as the
    # official command with metalib's Reptile settings, lr 0.001 x 5 inner steps, 50 at test, runs)
    ("Reptile", "omniglot", 5, 1): PaperNumber("97.68 ± 0.04", _REPTILE, _REPTILE_T.format("95.39 ± 0.09"), "S"),
    ("Reptile", "omniglot", 5, 5): PaperNumber("99.48 ± 0.06", _REPTILE, _REPTILE_T.format("98.90 ± 0.10"), "S"),
    ("Reptile", "omniglot", 20, 1): PaperNumber("89.43 ± 0.14", _REPTILE, _REPTILE_T.format("88.14 ± 0.15"), "S"),
    ("Reptile", "omniglot", 20, 5): PaperNumber("97.12 ± 0.32", _REPTILE, _REPTILE_T.format("96.65 ± 0.33"), "S"),
    ("Reptile", "miniimagenet", 5, 1): PaperNumber("49.97 ± 0.32", _REPTILE, _REPTILE_T.format("47.07 ± 0.26"), "S"),
    ("Reptile", "miniimagenet", 5, 5): PaperNumber("65.99 ± 0.58", _REPTILE, _REPTILE_T.format("62.74 ± 0.37"), "S"),
    ("ProtoNet", "omniglot", 5, 1): PaperNumber("98.8", f"{_PROTO}, Table 1", _PROTO_O, "P"),
    ("ProtoNet", "omniglot", 5, 5): PaperNumber("99.7", f"{_PROTO}, Table 1", _PROTO_O, "P"),
    ("ProtoNet", "omniglot", 20, 1): PaperNumber("96.0", f"{_PROTO}, Table 1", _PROTO_O, "P"),
    ("ProtoNet", "omniglot", 20, 5): PaperNumber("98.9", f"{_PROTO}, Table 1", _PROTO_O, "P"),
    ("ProtoNet", "miniimagenet", 5, 1): PaperNumber("49.42 ± 0.78", f"{_PROTO}, Table 2", _PROTO_M, "P"),
    ("ProtoNet", "miniimagenet", 5, 5): PaperNumber("68.20 ± 0.66", f"{_PROTO}, Table 2", _PROTO_M, "P"),
}


# the papers' numbers for notebook 08's table (metalib.course.PAPER_RESULTS), as docs/references.md lists them
_VINYALS = "Vinyals et al. 2016, Table 1, as quoted in Snell et al. 2017 and Finn et al. 2017 (Table 1)"
_VINYALS_O = ("Omniglot: 1,200 training / 423 test characters with rotations; the test queries and episodes are not "
              "recorded in docs/references.md")
_RAVI = "Ravi & Larochelle's re-run, as quoted in Snell et al. 2017, Table 2"
_SUNG = "Sung et al. 2018, Tables 1-2, as quoted by later papers"
_SUNG_O = ("official code: {}; BatchNorm over the episode's pairs at test; 1,000,000 (Omniglot) / 500,000 "
           "(miniImageNet) training episodes")
PAPER_RESULTS.update({
    **{("MatchingNet", "omniglot", n, k): PaperNumber(v, _VINYALS, _VINYALS_O, "P")
       for (n, k), v in {(5, 1): "98.1", (5, 5): "98.9", (20, 1): "93.8", (20, 5): "98.5"}.items()},
    ("MatchingNet", "miniimagenet", 5, 1): PaperNumber("43.40 ± 0.78", _RAVI, "Ravi split", "P"),
    ("MatchingNet", "miniimagenet", 5, 5): PaperNumber("51.09 ± 0.71", _RAVI, "Ravi split", "P"),
    ("MatchingNet+FCE", "miniimagenet", 5, 1): PaperNumber("43.56 ± 0.84", _RAVI, "Ravi split", "P"),
    ("MatchingNet+FCE", "miniimagenet", 5, 5): PaperNumber("55.31 ± 0.73", _RAVI, "Ravi split", "P"),
    **{("RelationNet", "omniglot", n, k): PaperNumber(v, _SUNG, _SUNG_O.format(
        "1,000 test episodes with K queries per class"), "S")
       for (n, k), v in {(5, 1): "99.6 ± 0.2", (5, 5): "99.8 ± 0.1", (20, 1): "97.6 ± 0.2", (20, 5): "99.1 ± 0.1"}.items()},
    **{("RelationNet", "miniimagenet", 5, k): PaperNumber(v, _SUNG, _SUNG_O.format(
        "600 test episodes with 15 queries per class"), "S")
       for k, v in {1: "50.44 ± 0.82", 5: "65.32 ± 0.70"}.items()},
})


# ============================================================================ the papers' numbers (docs/references.md)
_NOT_RECORDED = "split, queries per class and test episodes not recorded in docs/references.md"
PAPER_RESULTS.update({
    ("Meta-SGD", "omniglot", 5, 1): PaperNumber("99.53 ± 0.26", "Li et al. 2017, quoted by later papers",
                                                        _NOT_RECORDED, "S"),
    ("Meta-SGD", "omniglot", 5, 5): PaperNumber("99.93 ± 0.09", "Li et al. 2017, quoted by later papers",
                                                        _NOT_RECORDED, "S"),
    ("Meta-SGD", "miniimagenet", 5, 1): PaperNumber("50.47 ± 1.87", "Li et al. 2017, quoted by later papers",
                                                            "Ravi split; " + _NOT_RECORDED, "S"),
    ("Meta-SGD", "miniimagenet", 5, 5): PaperNumber("64.03 ± 0.94", "Li et al. 2017, quoted by later papers",
                                                            "Ravi split; " + _NOT_RECORDED, "S"),
    ("ANIL", "omniglot", 20, 1): PaperNumber("96.2 ± 0.5", "Raghu et al. 2020, quoted by later papers",
                                                     "MAML's setup; " + _NOT_RECORDED, "S"),
    ("ANIL", "omniglot", 20, 5): PaperNumber("98.0 ± 0.3", "Raghu et al. 2020, quoted by later papers",
                                                     "MAML's setup; " + _NOT_RECORDED, "S"),
    ("ANIL", "miniimagenet", 5, 1): PaperNumber("46.7 ± 0.4", "Raghu et al. 2020, quoted by later papers",
                                                        "Ravi split, MAML's setup", "S"),
    ("ANIL", "miniimagenet", 5, 5): PaperNumber("61.5 ± 0.5", "Raghu et al. 2020, quoted by later papers",
                                                        "Ravi split, MAML's setup", "S"),
    ("R2-D2", "miniimagenet", 5, 1): PaperNumber(
        "51.2 ± 0.6", "Bertinetto et al. 2019, quoted in MetaOptNet's Table 1",
        "96-192-384-512 backbone (not Conv-4); 10,000 test episodes in the official code", "S"),
    ("R2-D2", "miniimagenet", 5, 5): PaperNumber(
        "68.8 ± 0.1", "Bertinetto et al. 2019, quoted in MetaOptNet's Table 1",
        "96-192-384-512 backbone (not Conv-4); 10,000 test episodes in the official code", "S"),
    ("Meta-LSTM", "miniimagenet", 5, 1): PaperNumber(
        "43.44 ± 0.77", "Ravi & Larochelle 2017, quoted in Finn et al. Table 1 and Snell et al. Table 2",
        "Ravi split; BatchNorm: running averages of the episode's training set for its test set", "P"),
    ("Meta-LSTM", "miniimagenet", 5, 5): PaperNumber(
        "60.60 ± 0.71", "Ravi & Larochelle 2017, quoted in Finn et al. Table 1 and Snell et al. Table 2",
        "Ravi split; BatchNorm: running averages of the episode's training set for its test set", "P"),
})


# SNAIL's N-way K-shot numbers for notebook 08's table (metalib.course.PAPER_RESULTS), as
# docs/references.md (Model-based) lists them. Santoro et al. report accuracy by instance only (above), so
# the MANN and LSTM rows of the N-way K-shot table have no paper number.
_SNAIL = "Mishra et al. 2018, Omniglot table, as quoted by later papers"
_SNAIL_O = "Vinyals-style split with rotations; each query its own sequence; test episodes and interval not found"
PAPER_RESULTS.update({("SNAIL", "omniglot", n, k): PaperNumber(v, _SNAIL, _SNAIL_O, "S")
                      for (n, k), v in {(5, 1): "99.07", (5, 5): "99.78", (20, 1): "97.64", (20, 5): "99.36"}.items()})


# Santoro et al. 2016, Table 1 (Omniglot, 5 classes, one-hot labels; docs/references.md, Model-based; P): accuracy (%)
# at the 1st, 2nd, 3rd, 4th, 5th and 10th instance, after 100,000 training episodes (notebook 11).
INSTANCE_ACCURACY: Dict[str, Dict[int, float]] = {
    "MANN (LRUA)": {1: 36.4, 2: 82.8, 3: 91.0, 4: 92.6, 5: 94.9, 10: 98.1},
    "LSTM": {1: 24.4, 2: 49.5, 3: 55.3, 4: 61.0, 5: 63.6, 10: 62.5},
}

# Finn et al. 2017, App. C.1, Table 2: sinusoid regression, K = 5, query MSE after 1 / 5 / 10 steps (notebook 03).
SINUSOID_MSE_K5: Dict[str, Tuple[float, float, float]] = {"maml": (0.67, 0.38, 0.35), "pretrain": (2.41, 2.23, 2.19)}

# RL² (Duan et al. 2016), Table 1 (bandits): its numbers were NOT found (docs/references.md, Meta-RL: "not found");
# nothing here is the paper's. The official code's protocol for that table, and an earlier draft table from the same
# code (gen_figures.py, "Gittins Index / RNN Policy"; C-draft, not Table 1), keyed by (k arms, n pulls), notebook 13.
RL2_TABLE_FOUND = False
RL2_TABLE_PROTOCOL = ("official code (sandbox/rocky/neural_learner/scripts/bandits, C): 1,000 bandits per setting, "
                      "p_i ~ U[0, 1]; UCB1's c, epsilon-greedy's epsilon and OTS's samples tuned on those same trials; "
                      "Gittins: the best of discounts 0.9, 0.99, 0.999, 0.9999")
RL2_CODE_DRAFT: Dict[str, Dict[Tuple[int, int], float]] = {
    "Gittins": {(5, 10): 6.6068, (5, 100): 78.744, (5, 500): 401.89, (10, 10): 6.679, (10, 100): 83.632,
                (10, 500): 439.79, (50, 10): 6.6274, (50, 100): 84.978, (50, 500): 458.71},
    "RNN policy (RL²)": {(5, 10): 6.616, (5, 100): 74.404, (5, 500): 412.622, (10, 10): 6.70592,
                         (10, 100): 81.2792, (10, 500): 432.058, (50, 10): 6.5828, (50, 100): 73.386,
                         (50, 500): 438.602},
}

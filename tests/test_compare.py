"""metalib.course.compare: the comparison table's accuracies come from the manifest; costs are measured."""
import json

import pytest
import torch

import metalib
from metalib import fewshot, models
from metalib.course import compare
from metalib.pretrained import save_pretrained


def _ship_fake(directory, name, metrics=None, **config):
    cfg = fewshot.default_config(**config)
    info = {"kind": "fewshot", "config": cfg.to_dict(), "iterations": 123, "paper_iterations": 40_000,
            "minutes": 1.5, "device": "CPU: test"}
    if metrics is not None:
        info["metrics"] = metrics
    save_pretrained(name, fewshot.build_learner(cfg), info=info, directory=directory)
    return cfg


def test_shipped_results_read_the_manifest_entry(tmp_path):
    _ship_fake(tmp_path, "b-fomaml", {"test_accuracy": 91.234, "ci95": 0.567, "episodes": 600},
               algorithm="fomaml", n_way=5, k_shot=1)
    _ship_fake(tmp_path, "a-proto", {"test_accuracy": 50.0, "ci95": 1.0, "episodes": 100},
               algorithm="protonet", n_way=5, k_shot=5, dataset="miniimagenet")
    rs = compare.shipped_results(directory=tmp_path)
    # default order: Omniglot before miniImageNet, whatever the names' alphabetical order
    assert [r.name for r in rs] == ["b-fomaml", "a-proto"]
    fo, proto = rs
    assert (fo.method, fo.dataset, fo.n_way, fo.k_shot) == ("FOMAML", "omniglot", 5, 1)
    assert (fo.accuracy, fo.ci95, fo.episodes, fo.iterations) == (91.234, 0.567, 600, 123)
    assert fo.accuracy_text() == "91.23 ± 0.57 % (600 ep.)"
    assert proto.label == "ProtoNet, miniImageNet 5-way 5-shot"
    assert proto.config.image_size == 84 and proto.config.in_channels == 3
    table = compare.markdown_table(rs)
    assert "| `b-fomaml` | FOMAML | Omniglot 5-way 1-shot | 91.23 ± 0.57 (600 ep.) | 123 (40,000) |" in table
    assert table.count("not measured") == 4


def test_shipped_results_refuse_what_is_not_there(tmp_path):
    _ship_fake(tmp_path, "no-metrics", None, algorithm="maml", n_way=5, k_shot=1)
    save_pretrained("sine", metalib.MAML(models.sinusoid_mlp()), "metalib.models:sinusoid_mlp",
                    info={"learner": {"algorithm": "maml", "settings": {}}}, directory=tmp_path)
    with pytest.raises(ValueError, match="records no test_accuracy"):
        compare.shipped_results(["no-metrics"], directory=tmp_path)
    with pytest.raises(ValueError, match="not a few-shot classifier"):
        compare.shipped_results(["sine"], directory=tmp_path)
    with pytest.raises(KeyError, match="no shipped weights named 'nope'"):
        compare.shipped_results(["nope"], directory=tmp_path)


def test_method_labels():
    assert compare.method_label(fewshot.default_config("maml")) == "MAML"
    assert compare.method_label(fewshot.default_config("fomaml")) == "FOMAML"
    assert compare.method_label(fewshot.default_config("reptile")) == "Reptile"
    assert compare.method_label(fewshot.default_config("protonet")) == "ProtoNet"


def test_synthetic_images_fit_the_training_episodes():
    cfg = fewshot.default_config("protonet", 5, 1, "miniimagenet", train_way=30)
    x = compare.synthetic_images(cfg)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (30, 1 + 15 + 4, 3, 84, 84)
    assert torch.equal(x, compare.synthetic_images(cfg))  # seeded
    with pytest.raises(ValueError, match="need >= 30 classes of >= 16 images"):
        compare.synthetic_images(cfg, n_classes=29)


def _small(**kw):
    base = dict(iterations=100, meta_batch=2, image_size=28, hidden=8, val_every=0)
    base.update(kw)
    return fewshot.default_config("maml", 5, 1, **base)


def test_meta_iteration_cost_runs_the_trainer_steps(monkeypatch):
    calls = []
    real = metalib.MAML.train_step

    def spy(self, batch, optimizer):
        calls.append(batch[0].shape[0])
        return real(self, batch, optimizer)

    monkeypatch.setattr(metalib.MAML, "train_step", spy)
    cost = compare.meta_iteration_cost(_small(), repeats=2, warmup=1, device="cpu")
    assert calls == [2, 2, 2]  # 1 warm-up + 2 timed training steps, each on a meta-batch of 2 tasks
    assert 0 < cost.min_ms <= cost.median_ms <= cost.max_ms and cost.repeats == 2
    assert cost.peak_mb >= cost.before_mb > 0 and cost.memory_kind == "CPU peak RSS"
    with pytest.raises(ValueError, match="repeats"):
        compare.meta_iteration_cost(_small(), repeats=0)
    with pytest.raises(TypeError, match="FewShotConfig"):
        compare.meta_iteration_cost({"algorithm": "maml"})


@pytest.mark.slow
def test_isolated_memory_is_one_tasks_graph_not_the_meta_batchs():
    """In a fresh process the peak-RSS increase is the step's own. The trainer back-propagates task
    by task (MAML.meta_backward), so 32 second-order tasks of a 64-filter Conv-4 need about the memory
    of one (measured: +140 vs +190 MiB), where holding all 32 graphs until one backward needs many
    times more (W2, 1 query per class: +376 vs +30 MiB, benchmarks/README.md); time still grows."""
    small = compare.meta_iteration_cost_isolated(_small(meta_batch=1, hidden=64, train_query=15), repeats=1, warmup=0)
    big = compare.meta_iteration_cost_isolated(_small(meta_batch=32, hidden=64, train_query=15), repeats=1, warmup=0)
    assert big.memory_mb < 2 * small.memory_mb, (small, big)
    assert big.median_ms > 5 * small.median_ms
    json.dumps(big.as_dict())


def test_mean_ci95_matches_a_plain_loop():
    acc = [100.0, 80.0, 60.0, 80.0]
    mean = sum(acc) / 4
    std = (sum((a - mean) ** 2 for a in acc) / 4) ** 0.5  # ddof = 0
    m, c = compare.mean_ci95(acc)
    assert m == pytest.approx(80.0) and c == pytest.approx(1.96 * std / 2)
    with pytest.raises(ValueError, match="NaN"):
        compare.mean_ci95([1.0, float("nan")])
    with pytest.raises(ValueError, match="at least 2"):
        compare.mean_ci95([1.0])


def test_episodes_for_ci_is_the_smallest_sufficient_count():
    for std, h in ((17.0, 1.0), (5.0, 0.4), (9.9, 2.0), (1.96, 1.0)):
        n = compare.episodes_for_ci(std, h)
        assert 1.96 * std / n ** 0.5 <= h + 1e-12
        assert n == 1 or 1.96 * std / (n - 1) ** 0.5 > h
    assert compare.episodes_for_ci(1.96, 1.0) == 15  # (1.96 * 1.96)^2 = 14.76 -> 15
    assert compare.episodes_for_ci(10.0, 1.96) == 100  # exactly (1.96 * 10 / 1.96)^2: no rounding up
    with pytest.raises(ValueError):
        compare.episodes_for_ci(1.0, 0.0)


def test_paper_numbers_are_the_references_files():
    """Every paper number the notebooks print from compare.PAPER_RESULTS stands in docs/references.md,
    on a row of the same setting, with the same verification letter; none is an unverified (?) one."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "references.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    datasets = {"omniglot": "Omniglot", "miniimagenet": "miniImageNet"}
    for (method, dataset, n, k), p in compare.load_paper_numbers().items():   # every course module's entries
        assert p.source in ("P", "C", "S"), (method, p)
        setting = f"{datasets[dataset]} {n}-way {k}-shot"
        hits = [r for r in rows if f"| {p.value} |" in r and f"| {setting} |" in r]
        assert hits, f"{method} {setting}: {p.value} is not in docs/references.md"
        assert any(r.rstrip().endswith(f"| {p.source} |") for r in hits), (method, setting, hits)


def test_results_are_grouped_by_family_and_the_table_shows_the_baseline(tmp_path):
    _ship_fake(tmp_path, "m", {"test_accuracy": 90.0, "ci95": 1.0, "episodes": 600}, algorithm="maml", n_way=5, k_shot=1)
    _ship_fake(tmp_path, "p", {"test_accuracy": 95.0, "ci95": 0.5, "episodes": 600}, algorithm="protonet", n_way=5, k_shot=1)
    rs = compare.shipped_results(["m", "p"], directory=tmp_path)
    groups = compare.by_family(rs)
    assert list(groups) == ["metric-based", "optimisation-based"]
    assert [r.name for r in groups["metric-based"]] == ["p"]
    assert compare.paper_number(rs[0]).value == "98.7 ± 0.4" and compare.paper_number(rs[1]).text() == "98.8 [P]"
    cost = compare.Cost(median_ms=12.0, min_ms=10.0, max_ms=14.0, repeats=2, warmup=1, peak_mb=300.0, before_mb=250.0,
                        device="CPU", memory_kind="CPU peak RSS")
    table = compare.markdown_table(rs, {"m": cost})
    assert "| optimisation-based | `m` | MAML |" in table and "| 12 | 50 (250) |" in table
    assert "MiB" not in compare.markdown_table(rs, {"m": cost}, memory=False)


def test_a_table_of_every_shipped_learner_finds_every_course_modules_paper_numbers():
    """Notebook 08 imports only compare: a family's numbers, added by its own course module (Matching and
    Relation Networks: metric_lab), are found all the same — in a fresh process, where nothing else
    imported that module."""
    import subprocess
    import sys

    code = ("from types import SimpleNamespace as S; from metalib.course import compare; import sys; "
            "assert 'metalib.course.metric_lab' not in sys.modules; "
            "print(compare.paper_number(S(method='RelationNet', dataset='omniglot', n_way=5, k_shot=1)).value); "
            "print(compare.paper_number(S(method='MatchingNet', dataset='omniglot', n_way=5, k_shot=5)).value); "
            "print(compare.paper_number(S(method='MAML', dataset='omniglot', n_way=5, k_shot=1)).value); "
            "print(compare.paper_number(S(method='NoSuchNet', dataset='omniglot', n_way=5, k_shot=1)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:4] == ["99.6 ± 0.2", "98.9", "98.7 ± 0.4", "None"], out


def test_a_cpu_budget_run_says_its_budget_in_its_label():
    """Two shipped runs of one method and episode shape (the paper-schedule one and issue #29's 30-CPU-minute
    one) must not print the same label in notebook 08's tables."""
    from metalib.course import compare

    rows = {r.name: r for r in compare.shipped_results(["matching-omniglot-5w1s", "matching-omniglot-5w1s-budget30"])}
    assert rows["matching-omniglot-5w1s"].label == "MatchingNet, Omniglot 5-way 1-shot"
    assert rows["matching-omniglot-5w1s-budget30"].label == "MatchingNet, Omniglot 5-way 1-shot [30 CPU-min]"


def test_label_points_keeps_the_labels_of_close_points_apart():
    """08's scatter (accuracy against seconds per meta-iteration): ANIL beside MAML, R2-D2 on ProtoNet —
    every label clear of the other labels and of the other points' markers, inside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metalib.course import plots

    xs = [0.020, 0.021, 0.30, 0.31, 0.05, 0.052, 0.9]
    ys = [96.0, 96.3, 95.1, 95.0, 97.2, 97.0, 85.0]
    names = ["ProtoNet", "R2-D2", "MAML", "ANIL", "Matching Networks", "Relation Networks", "Reptile"]
    fig, ax = plt.subplots(figsize=(8.4, 4.2))
    ax.errorbar(xs, ys, yerr=0.3, fmt="o", capsize=3)
    ax.set_xscale("log")
    ax.margins(x=0.3)
    texts = plots.label_points(ax, xs, ys, names)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in texts]
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[i + 1:], i + 1):
            assert not a.overlaps(b), (names[i], names[j])
        px, py = ax.transData.transform((xs[i], ys[i]))
        for k, (x, y) in enumerate(zip(xs, ys)):
            if k != i:
                qx, qy = ax.transData.transform((x, y))
                assert not (a.x0 < qx < a.x1 and a.y0 < qy < a.y1), (names[i], "covers", names[k])
    assert [t.get_text() for t in texts] == names
    plt.close(fig)


def test_every_registered_learner_has_a_family_the_comparison_knows():
    """08 groups and orders the shipped rows by ``learner.family``: a learner with no family, or one outside
    :data:`compare.FAMILIES`, would land in an "other" group (MetaGAN once inherited MAML's family)."""
    from metalib import algorithms
    families = {name: algorithms.entry(name).cls.family for name in algorithms.available()}
    assert all(f in compare.FAMILIES for f in families.values()), families
    assert families["metagan"] == families["platipus"] == "generative"

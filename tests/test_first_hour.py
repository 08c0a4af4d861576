"""A new user's first hour (issue #28): run folders keyed by the config, evaluate's progress bar only
when someone watches, --help with one default each, one Ctrl-C message, README matching the code."""

import io
import re
import sys
from pathlib import Path

import pytest
import torch

from metalib import device, fewshot, runs

ROOT = Path(__file__).resolve().parent.parent


def _paper(**kw):
    return fewshot.default_config("protonet", 5, 1, "omniglot", **kw).to_dict()


def test_run_name_is_the_paper_name_for_the_paper_config_and_ignores_iterations():
    paper = _paper()
    assert runs.run_name(paper, paper) == ("protonet-omniglot-5w1s", [])
    assert runs.run_name(_paper(iterations=200), paper) == ("protonet-omniglot-5w1s", [])  # --longer's folder


def test_a_changed_setting_gets_its_own_stable_folder():
    paper = _paper()
    a, changed = runs.run_name(_paper(meta_lr=0.01), paper)
    b, _ = runs.run_name(_paper(meta_lr=0.01, iterations=50), paper)
    c, _ = runs.run_name(_paper(meta_lr=0.02), paper)
    assert changed == ["meta_lr"]
    assert a == b and re.fullmatch(r"protonet-omniglot-5w1s-[0-9a-f]{8}", a)
    assert c != a


def test_interactive_follows_the_variable_and_is_off_under_pytest(monkeypatch):
    monkeypatch.delenv("METALIB_PROGRESS", raising=False)
    assert device.interactive() is False  # pytest is running
    monkeypatch.setenv("METALIB_PROGRESS", "1")
    assert device.interactive() is True
    monkeypatch.setenv("METALIB_PROGRESS", "0")
    assert device.interactive() is False


def _evaluate(monkeypatch, progress):
    from metalib import ProtoNet, models

    torch.manual_seed(0)
    learner = ProtoNet(models.Conv4(in_channels=1, hidden=8))
    data = torch.randint(0, 255, (6, 4, 1, 28, 28), dtype=torch.uint8)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setitem(sys.modules, "tqdm.auto", __import__("tqdm.std", fromlist=["tqdm"]))  # text, not a widget
    fewshot.evaluate(learner, data, 5, 1, 2, episodes=30, progress=progress)
    return err.getvalue()


def test_evaluate_shows_a_bar_by_default_only_when_interactive(monkeypatch):
    monkeypatch.setenv("METALIB_PROGRESS", "0")
    assert "evaluating" not in _evaluate(monkeypatch, None)
    monkeypatch.setenv("METALIB_PROGRESS", "1")
    assert "evaluating ProtoNet" in _evaluate(monkeypatch, None)  # the bar (how far it drew depends on timing)
    assert "evaluating" not in _evaluate(monkeypatch, False)  # an explicit False wins


def test_help_shows_one_default_per_option(capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_fewshot

    with pytest.raises(SystemExit):
        train_fewshot.parse(["--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    options = re.split(r" (?=--[a-z])", text.split("options:", 1)[1])
    doubled = [o[:40] for o in options if len(re.findall(r"\bdefault\b", o)) > 1]
    assert not doubled, doubled


def test_script_adds_no_second_interrupt_message():
    text = (ROOT / "scripts" / "train_fewshot.py").read_text()
    assert "run the same command again to resume" not in text  # the trainer's message says it, once


def test_readme_says_load_run_returns_learner_and_config():
    readme = (ROOT / "README.md").read_text()
    assert "learner, config = metalib.fewshot.load_run(" in readme
    assert "loads a run's best checkpoint as a `Learner`" not in readme


def test_a_second_command_with_other_settings_starts_its_own_run(train_fewshot_cli, tmp_path, monkeypatch, capsys):
    """The issue's trap: a second command with other settings stopped on ConfigMismatchError."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _nets import TINY_RUN_ARGS

    monkeypatch.setattr(train_fewshot_cli, "ROOT", tmp_path)
    assert train_fewshot_cli.main(TINY_RUN_ARGS) == 0
    first = capsys.readouterr().out
    assert train_fewshot_cli.main(TINY_RUN_ARGS + ["--seed", "7"]) == 0
    second = capsys.readouterr().out
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(re.fullmatch(r"protonet-omniglot-3w1s-[0-9a-f]{8}", f) for f in folders)
    assert "their own run folder" in first and "seed" in second.split("their own run folder")[0]
    assert train_fewshot_cli.main(TINY_RUN_ARGS) == 0  # the first command again: its own folder, resumed
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == folders

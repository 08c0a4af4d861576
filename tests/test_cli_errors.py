"""The training scripts: every mistake on the command line is one line on stderr and exit code 2,
found before the first iteration; a finished run can be trained longer; the result file is named."""
import importlib.util
from pathlib import Path

import pytest

from metalib import fewshot

from _nets import synthetic_images

ROOT = Path(__file__).resolve().parents[1]


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cli(monkeypatch):
    data = {"train": synthetic_images(10, 8, 28, seed=0), "val": synthetic_images(6, 8, 28, seed=1),
            "test": synthetic_images(8, 8, 28, seed=2)}
    monkeypatch.setattr(fewshot, "load_split", lambda config, split, progress=False: data[split])
    return script("train_fewshot")


BASE = ["--algorithm", "protonet", "--way", "3", "--shot", "1", "--iterations", "2", "--hidden", "8",
        "--train-way", "4", "--train-query", "2", "--test-query", "2", "--val-every", "2", "--val-episodes", "2",
        "--test-episodes", "4", "--no-progress", "--threads", "1"]


def one_line_error(capsys, code, expected):
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    assert expected in err[0], err[0]


@pytest.mark.parametrize("extra, expected", [
    (["--way", "0"], "n_way must be >= 1"),
    (["--shot", "0"], "k_shot must be >= 1"),
    (["--iterations", "-1"], "iterations must be >= 0"),
    (["--inner-lr", "-1"], "protonet has no setting 'inner_lr'"),
    (["--algorithm", "maml", "--train-way", "3", "--inner-lr", "-1"], "inner_lr must be a finite number >= 0"),
    (["--hidden", "0"], "hidden must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--test-query", "50"], "episodes cannot be drawn"),
    (["--test-way", "5000"], "the test episodes cannot be drawn: n_way=5000"),
])
def test_bad_settings_are_one_line_before_training(cli, capsys, tmp_path, extra, expected):
    code = cli.main(BASE + ["--run-dir", str(tmp_path / "run")] + extra)
    one_line_error(capsys, code, expected)
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing was trained


def test_cuda_without_a_gpu_is_one_line(cli, capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    one_line_error(capsys, cli.main(BASE + ["--run-dir", str(tmp_path / "r"), "--device", "cuda"]),
                   "CUDA is not available")


def test_test_way_for_a_fixed_head_is_refused_before_training(cli, capsys, tmp_path):
    i = BASE.index("--train-way")
    args = [a if a != "protonet" else "maml" for a in BASE[:i] + BASE[i + 2:]]
    args += ["--run-dir", str(tmp_path / "r"), "--test-way", "5"]
    one_line_error(capsys, cli.main(args), "--test-way is for learners without a fixed head")


def test_a_changed_setting_names_the_flags_and_a_run_can_be_trained_longer(cli, capsys, tmp_path):
    run = ["--run-dir", str(tmp_path / "run")]
    assert cli.main(BASE + run) == 0
    out = capsys.readouterr()
    assert "result written to" in out.out and "result-3w1s.json" in out.out
    assert "iteration 2: validation" in out.err  # the validation lines show without the progress bar
    longer = [a if a != "2" or BASE[i - 1] != "--iterations" else "4" for i, a in enumerate(BASE)]
    code = cli.main(longer + run)
    err = capsys.readouterr().err
    assert code == 2 and "--fresh" in err and "--longer" in err and "resume=False" not in err
    assert cli.main(longer + run + ["--longer"]) == 0
    out = capsys.readouterr().out
    assert "starting at iteration 2/4" in out and "trained 4 iterations" in out


def test_the_sinusoid_script_errors_are_one_line(capsys):
    cli = script("train_sinusoid")
    one_line_error(capsys, cli.main(["--kinds", "maml", "--iterations", "-1", "--no-save"]),
                   "iterations must be")


def test_every_learner_option_is_settable_and_only_what_the_learner_uses_is_printed(cli, capsys, tmp_path):
    """--option KEY=VALUE reaches the learner (on top of the paper's options, with --batching); the
    printed config holds no setting the learner does not take (ProtoNet: no inner_lr, outer_lr, ...)."""
    import json

    run = ["--run-dir", str(tmp_path / "run"), "--iterations", "0"]
    args = [a if a != "protonet" else "matching" for a in BASE] + run + ["--option", "fce=true", "--option",
                                                                          "fce_steps=2"]
    assert cli.main(args) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[2])
    assert (printed["fce"], printed["fce_steps"]) == (True, 2)
    assert not set(printed) & {"inner_lr", "inner_steps", "outer_lr", "inner_optimizer", "first_order", "options"}
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved == printed
    # every learner's own settings are flags too (made from its config class)
    args = [a if a != "protonet" else "matching" for a in BASE] + ["--run-dir", str(tmp_path / "flags"),
                                                                   "--iterations", "0", "--fce", "--fce-steps", "2"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[2]) == printed
    one_line_error(capsys, cli.main(BASE + ["--run-dir", str(tmp_path / "r2"), "--option", "nonsense"]),
                   "--option takes KEY=VALUE")
    one_line_error(capsys, cli.main(BASE + ["--run-dir", str(tmp_path / "r3"), "--option", "no_such=1"]), "no_such")

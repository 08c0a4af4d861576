"""Issue 24, items 4, 5 and the run folder's ugly ones: a run folder never loses or swaps its best weights.

* following the corrupt-checkpoint advice (move last.pt aside) never restarts the run over its best.pt;
  the advice says nothing that does not work (``cp best.pt last.pt``);
* a checkpoint of another run, algorithm or architecture is refused (one line naming the mismatch) by
  resuming, ``--eval-only`` and ``load_run``;
* ``--eval-only`` with a damaged best.pt: one line, and the result file is left as it was;
* a resume never duplicates a validation entry in the history;
* the command line: ``--device bogus``, ``--until -3``, ``--iterations 0``, Ctrl-C in the final test.

Tiny Conv-4 (8 filters) on synthetic images, as tests/test_checkpoint.py: a few seconds each.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _nets import TINY_RUN_ARGS

from metalib import checkpoint as ckpt
from metalib import fewshot, runs
from metalib.fewshot import FewShotTrainer, default_config

from _nets import synthetic_images

ROOT = Path(__file__).resolve().parents[1]
TRAIN, VAL = synthetic_images(10, 8, 16, seed=0), synthetic_images(6, 8, 16, seed=1)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):     # tests/conftest.py's, for every test here
    yield


def tiny(algorithm="protonet", **kw):
    extra = dict(train_way=4) if algorithm == "protonet" else dict(inner_lr=0.1, inner_steps=1, test_inner_steps=1)
    base = dict(dataset="custom", image_size=16, hidden=8, iterations=4, meta_batch=2, train_query=2, test_query=2,
                val_every=2, val_episodes=3, checkpoint_every=2, seed=3, **extra)
    base.update(kw)
    return default_config(algorithm, n_way=3, k_shot=1, **base)


def trainer(cfg, run_dir=None, **kw):
    return FewShotTrainer(cfg, TRAIN, VAL, run_dir=run_dir, progress=False, **kw)


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text.strip(), text
    return text


# ----------------------------------------------------------------------------- item 4: the advice loses nothing
def test_a_fresh_start_never_deletes_a_best_pt(tmp_path):
    run = tmp_path / "run"
    trainer(tiny(), run).fit()
    best = (run / "best.pt").read_bytes()
    (run / "last.pt").unlink()  # what the old advice said to do with a corrupt last.pt
    with pytest.raises(ckpt.CheckpointError, match="holds best.pt but no last.pt") as err:
        trainer(tiny(), run)
    assert "--fresh" in one_line(err)
    assert (run / "best.pt").read_bytes() == best
    # starting over is explicit: resume=False (--fresh)
    trainer(tiny(), run, resume=False)
    assert not (run / "best.pt").exists()


def test_the_corrupt_checkpoint_advice_keeps_best_pt_and_suggests_no_copy(tmp_path):
    run = tmp_path / "run"
    trainer(tiny(), run).fit()
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:100])
    with pytest.raises(ckpt.CorruptCheckpointError) as err:
        trainer(tiny(), run)
    text = one_line(err)
    assert "move it aside" in text and "cp " not in text and "resume from" not in text
    assert (run / "best.pt").exists()


def test_a_best_pt_copied_to_last_pt_is_named_as_such(tmp_path):
    run = tmp_path / "run"
    trainer(tiny(), run).fit()
    shutil.copy(run / "best.pt", run / "last.pt")
    with pytest.raises(ckpt.CheckpointError, match="best-validation weights only.*cannot resume") as err:
        trainer(tiny(), run)
    one_line(err)


# ----------------------------------------------------------------------------- item 5: foreign checkpoints
def _foreign_best(tmp_path, mine, theirs):
    trainer(theirs, tmp_path / "theirs").fit()
    trainer(mine, tmp_path / "mine").fit()
    shutil.copy(tmp_path / "theirs" / "best.pt", tmp_path / "mine" / "best.pt")
    return tmp_path / "mine"


@pytest.mark.parametrize("theirs, needle", [
    (dict(algorithm="maml"), "algorithm 'maml'"),
    (dict(hidden=16), "hidden 16"),
    (dict(seed=4), "seed 4"),
])
def test_a_foreign_best_pt_is_refused_by_resume_and_load_run(tmp_path, theirs, needle):
    mine = tiny()
    other = tiny(**theirs) if "algorithm" not in theirs else tiny(theirs["algorithm"])
    run = _foreign_best(tmp_path, mine, other)
    with pytest.raises(runs.ForeignCheckpointError, match="not a checkpoint of this run") as err:
        trainer(mine, run)
    assert needle in one_line(err)
    with pytest.raises(runs.ForeignCheckpointError, match="not a checkpoint of this run") as err:
        fewshot.load_run(run)
    assert needle in one_line(err)
    fewshot.load_run(run, which="last")  # its own last.pt still loads


def test_load_run_refuses_a_foreign_last_pt(tmp_path):
    """load_run built a MatchingNetworks learner from a checkpoint whose config says protonet."""
    trainer(tiny("maml"), tmp_path / "theirs").fit()
    trainer(tiny(), tmp_path / "mine").fit()
    shutil.copy(tmp_path / "theirs" / "last.pt", tmp_path / "mine" / "last.pt")
    with pytest.raises(runs.ForeignCheckpointError, match="algorithm 'maml'.*'protonet'") as err:
        fewshot.load_run(tmp_path / "mine", which="last")
    one_line(err)


def test_a_longer_run_still_loads_its_own_best(tmp_path):
    run = tmp_path / "run"
    trainer(tiny(), run).fit()
    t = trainer(tiny(iterations=6), run, longer=True)
    t.fit()
    learner, config = fewshot.load_run(run)
    assert config.iterations == 6


def test_check_run_checkpoint_names_every_difference_in_one_line():
    saved, now = tiny().to_dict(), tiny(hidden=16, seed=9).to_dict()
    with pytest.raises(runs.ForeignCheckpointError) as err:
        runs.check_run_checkpoint({"config": saved}, now, "x/best.pt")
    text = one_line(err)
    assert text.index("hidden") < text.index("seed")  # the architecture first
    runs.check_run_checkpoint({"config": {**saved, "iterations": 99}}, saved, "x/best.pt")  # --longer
    runs.check_run_checkpoint({"config": {**saved, "test_episodes": 7, "test_seed": 1}}, saved, "x/best.pt")
    with pytest.raises(runs.ForeignCheckpointError, match="records no config"):
        runs.check_run_checkpoint({"config": None}, saved, "x/best.pt")


# ----------------------------------------------------------------------------- a resume never duplicates a validation
def test_a_resume_after_an_interrupt_in_the_best_save_does_not_duplicate_a_validation(tmp_path, monkeypatch):
    run = tmp_path / "run"
    original = ckpt.save_checkpoint
    calls = {"n": 0}

    def interrupted_best(path, state):
        if Path(path).name == "best.pt" and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt
        return original(path, state)

    monkeypatch.setattr(ckpt, "save_checkpoint", interrupted_best)
    t = trainer(tiny(), run)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    monkeypatch.setattr(ckpt, "save_checkpoint", original)
    resumed = trainer(tiny(), run)
    resumed.fit()
    its = [it for it, _, _ in resumed.history.val]
    assert its == sorted(set(its)) == [2, 4]
    assert (run / "best.pt").exists()


def test_record_validation_replaces_an_entry_of_the_same_iteration():
    from metalib.training import History

    h = History()
    runs.record_validation(h, 2, 50.0, 1.0)
    runs.record_validation(h, 2, 51.0, 1.0)
    runs.record_validation(h, 4, 60.0, 1.0)
    assert h.val == [(2, 51.0, 1.0), (4, 60.0, 1.0)]


# ----------------------------------------------------------------------------- the command line
@pytest.fixture
def cli(train_fewshot_cli):
    return train_fewshot_cli


BASE = TINY_RUN_ARGS


def error_line(capsys, code, needle):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    return err[0]


def test_device_bogus_is_one_line(cli, capsys, tmp_path):
    error_line(capsys, cli.main(BASE + ["--run-dir", str(tmp_path / "r"), "--device", "bogus"]), "'bogus' is not a device")


def test_until_negative_is_refused(cli, capsys, tmp_path):
    error_line(capsys, cli.main(BASE + ["--run-dir", str(tmp_path / "r"), "--until", "-3"]), "--until must be >= 0")
    assert not (tmp_path / "r" / "last.pt").exists()


def test_iterations_zero_says_it_tests_untrained_weights(cli, capsys, tmp_path):
    i = BASE.index("--iterations")
    args = BASE[:i] + ["--iterations", "0"] + BASE[i + 2:]
    assert cli.main(args + ["--run-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr()
    assert "untrained" in out.out + out.err


def test_eval_only_refuses_a_foreign_best_pt(cli, capsys, tmp_path):
    assert cli.main(BASE + ["--run-dir", str(tmp_path / "mine")]) == 0
    assert cli.main(BASE + ["--run-dir", str(tmp_path / "theirs"), "--seed", "7"]) == 0
    capsys.readouterr()
    result = tmp_path / "mine" / "result-3w1s.json"
    before = result.read_bytes()
    shutil.copy(tmp_path / "theirs" / "best.pt", tmp_path / "mine" / "best.pt")
    error_line(capsys, cli.main(BASE + ["--run-dir", str(tmp_path / "mine"), "--eval-only"]), "seed 7")
    assert result.read_bytes() == before


def test_eval_only_with_a_damaged_best_pt_is_one_line_and_keeps_the_result(cli, capsys, tmp_path):
    run = tmp_path / "run"
    assert cli.main(BASE + ["--run-dir", str(run)]) == 0
    result = run / "result-3w1s.json"
    before = result.read_bytes()
    assert json.loads(before)["best_validation"] is not None
    data = bytearray((run / "best.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run / "best.pt").write_bytes(bytes(data))
    capsys.readouterr()
    error_line(capsys, cli.main(BASE + ["--run-dir", str(run), "--eval-only"]), "best.pt")
    assert result.read_bytes() == before


def test_eval_only_may_use_another_test_protocol(cli, capsys, tmp_path):
    run = tmp_path / "run"
    assert cli.main(BASE + ["--run-dir", str(run)]) == 0
    i = BASE.index("--test-episodes")
    args = BASE[:i] + ["--test-episodes", "6"] + BASE[i + 2:]
    assert cli.main(args + ["--run-dir", str(run), "--eval-only"]) == 0
    assert json.loads((run / "result-3w1s.json").read_text())["test"]["episodes"] == 6


def test_eval_only_without_last_pt_tests_best_pt(cli, capsys, tmp_path):
    """The run folder after a corrupt last.pt was moved aside: --eval-only still tests best.pt."""
    run = tmp_path / "run"
    assert cli.main(BASE + ["--run-dir", str(run)]) == 0
    first = json.loads((run / "result-3w1s.json").read_text())
    (run / "last.pt").rename(run / "last.pt.corrupt")
    best = (run / "best.pt").read_bytes()
    capsys.readouterr()
    assert cli.main(BASE + ["--run-dir", str(run), "--eval-only"]) == 0
    again = json.loads((run / "result-3w1s.json").read_text())
    assert again["test"]["mean"] == first["test"]["mean"] and (run / "best.pt").read_bytes() == best
    # and training again in that folder is refused (it would delete best.pt), in one line
    error_line(capsys, cli.main(BASE + ["--run-dir", str(run)]), "holds best.pt but no last.pt")
    assert (run / "best.pt").read_bytes() == best


def test_ctrl_c_in_the_final_test_is_one_line(cli, capsys, tmp_path, monkeypatch):
    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fewshot.FewShotTrainer, "test", interrupted)
    code = cli.main(BASE + ["--run-dir", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert code == 130 and "Traceback" not in out.err
    assert "interrupted" in (out.out + out.err) and "--eval-only" in (out.out + out.err)


def test_resume_with_a_damaged_best_pt_warns_in_one_line(cli, capsys, tmp_path):
    """Issue 24: resuming over a damaged best.pt goes on without it, and says so in one line (it printed
    Python's two: the warning and the source line of ``warnings.warn``)."""
    i = BASE.index("--iterations")
    args = BASE[:i] + ["--iterations", "4"] + BASE[i + 2:] + ["--run-dir", str(tmp_path / "r")]
    assert cli.main(args + ["--until", "2"]) == 0
    best = tmp_path / "r" / "best.pt"
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 0xFF
    best.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli.main(args) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    about = [line for line in err if "best.pt" in line]
    assert len(about) == 1 and about[0].startswith("warning: ") and "cannot be used" in about[0], err
    assert not any(line.lstrip().startswith("warnings.warn") for line in err), err


@pytest.mark.parametrize("flag, needle", [(["--first-order"], "protonet has no setting 'first_order'"),
                                          (["--batching", "vmap"], "protonet has no setting 'batching'")])
def test_flags_protonet_has_no_use_for_are_refused_in_one_line(cli, capsys, tmp_path, flag, needle):
    """Issue 24: --first-order was silently ignored by ProtoNet, --batching vmap failed on an unexpected keyword;
    ProtoNet's typed config (issue 23) has neither field, so both are refused in one line naming what it has."""
    error_line(capsys, cli.main(BASE + ["--run-dir", str(tmp_path / "r")] + flag), needle)
    assert not (tmp_path / "r").exists()

"""Issue 24, item 1 and its ugly ones: nothing in a weights manifest can run code or write a file.

A manifest entry names the network's constructor; loading calls only a constructor of an explicit
allow-list (:data:`metalib.pretrained.BUILDERS`) with keyword arguments checked against its schema.
Also: a missing sha256, weights of another architecture and NaN weights are one clear line each;
ship names are plain names and an existing name is replaced only when asked."""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _nets import TINY_RUN_ARGS
import torch

import metalib
from metalib import MAML, fewshot, models
from metalib.pretrained import WEIGHTS_DIR, CorruptWeightsError, save_pretrained

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"learner": {"algorithm": "maml", "settings": {"inner_lr": 0.05, "inner_steps": 2, "loss_fn": "mse_loss"}}}


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text.strip(), text
    return text


def _sine(directory: Path, name="demo") -> Path:
    torch.manual_seed(0)
    save_pretrained(name, MAML(models.sinusoid_mlp()), "metalib.models:sinusoid_mlp", info=SPEC, directory=directory)
    return directory / "MANIFEST.json"


def _fewshot(directory: Path, name="proto") -> Path:
    cfg = fewshot.default_config("protonet", n_way=3, k_shot=1, hidden=8, iterations=1)
    torch.manual_seed(0)
    save_pretrained(name, fewshot.build_learner(cfg), info={"kind": "fewshot", "config": cfg.to_dict()},
                    directory=directory)
    return directory / "MANIFEST.json"


def _edit(manifest: Path, name: str, **changes) -> None:
    data = json.loads(manifest.read_text())
    for k, v in changes.items():
        if v is None:
            data[name].pop(k, None)
        else:
            data[name][k] = v
    manifest.write_text(json.dumps(data))


LOADERS = {
    "pretrained": lambda name, d: metalib.pretrained(name, directory=d),
    "pretrained_learner": lambda name, d: fewshot.pretrained_learner(name, device="cpu", directory=d),
    "evaluate_pretrained": lambda name, d: fewshot.evaluate_pretrained(
        name, data=torch.zeros(4, 3, 1, 28, 28, dtype=torch.uint8), episodes=1, device="cpu", directory=d),
}


# ----------------------------------------------------------------------------- the attacks of the issue
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_manifest_cannot_make_download_file_write_a_file(tmp_path, loader):
    manifest = _fewshot(tmp_path / "w")
    payload = tmp_path / "payload"
    payload.write_text("import os; os.system('echo pwned')\n")
    evil = tmp_path / "site" / "evil.pth"
    from metalib.io import md5_file

    _edit(manifest, "proto", builder="metalib.data.download:download_file",
          builder_kwargs={"url": payload.as_uri(), "dest": str(evil), "md5": md5_file(payload), "progress": False})
    with pytest.raises(CorruptWeightsError, match="not a model constructor metalib allows") as err:
        LOADERS[loader]("proto", tmp_path / "w")
    _one_line(err)
    assert not evil.exists()


@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_manifest_cannot_make_atomic_write_json_overwrite_a_file(tmp_path, loader):
    manifest = _fewshot(tmp_path / "w")
    victim = tmp_path / "victim.json"
    victim.write_text('{"precious": true}')
    _edit(manifest, "proto", builder="metalib.io:atomic_write_json",
          builder_kwargs={"obj": {"pwned": True}, "path": str(victim)})
    with pytest.raises(CorruptWeightsError, match="not a model constructor metalib allows"):
        LOADERS[loader]("proto", tmp_path / "w")
    assert json.loads(victim.read_text()) == {"precious": True}


def test_the_shipped_manifest_edited_cannot_run_code(tmp_path):
    """The shipped MANIFEST.json itself (a copy of it, with one entry turned into the attack)."""
    w = tmp_path / "w"
    w.mkdir()
    shutil.copy(WEIGHTS_DIR / "MANIFEST.json", w / "MANIFEST.json")
    shutil.copy(WEIGHTS_DIR / "protonet-omniglot-5w1s.pt", w / "protonet-omniglot-5w1s.pt")
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    _edit(w / "MANIFEST.json", "protonet-omniglot-5w1s", builder="metalib.io:atomic_write_json",
          builder_kwargs={"obj": [1], "path": str(victim)})
    for loader in LOADERS.values():
        with pytest.raises(CorruptWeightsError, match="not a model constructor metalib allows"):
            loader("protonet-omniglot-5w1s", w)
    assert victim.read_text() == "{}"


@pytest.mark.parametrize("builder", ["metalib.models:conv_block", "metalib.pretrained:save_pretrained",
                                     "metalib.models:Conv4.__init__", "metalib.models", "", 7, None])
def test_only_the_allow_listed_constructors_are_called(tmp_path, builder):
    manifest = _sine(tmp_path)
    _edit(manifest, "demo", builder=builder)
    with pytest.raises(CorruptWeightsError, match="not a model constructor metalib allows") as err:
        metalib.pretrained("demo", directory=tmp_path)
    assert "metalib.models:Conv4" in _one_line(err)  # names what is allowed


@pytest.mark.parametrize("kwargs, needle", [
    ({"in_features": 1, "out_features": 1, "hidden": [40, 40], "activation": "os.system"}, "unknown argument 'activation'"),
    ({"in_features": "1"}, "in_features must be an int"),
    ({"in_features": True}, "in_features must be an int"),
    ({"in_features": 10 ** 9}, "in_features must be between"),
    ({"hidden": [40, -1]}, "hidden must be a list of ints between"),
    ({"hidden": "40"}, "hidden must be a list of ints"),
    ({"in_features": 100_000, "hidden": [100_000] * 8, "out_features": 1}, "parameters, more than any"),
    ([1, 2], "builder_kwargs must be a JSON object"),
])
def test_constructor_arguments_are_checked(tmp_path, kwargs, needle):
    manifest = _sine(tmp_path)
    _edit(manifest, "demo", builder="metalib.models:MLP", builder_kwargs=kwargs)
    with pytest.raises(CorruptWeightsError, match=needle) as err:
        metalib.pretrained("demo", directory=tmp_path)
    _one_line(err)


@pytest.mark.parametrize("kwargs, needle", [
    ({"hidden": 10 ** 7}, "hidden must be between"),
    ({"image_size": 8}, "image_size must be between"),
    ({"n_classes": 0}, "n_classes must be None or between"),
    ({"track_running_stats": "yes"}, "track_running_stats must be true or false"),
    ({"hidden": 4096, "image_size": 1024, "n_classes": 100_000}, "parameters, more than any metalib network"),
])
def test_conv4_arguments_are_checked(tmp_path, kwargs, needle):
    manifest = _fewshot(tmp_path)
    data = json.loads(manifest.read_text())
    _edit(manifest, "proto", builder_kwargs={**data["proto"]["builder_kwargs"], **kwargs})
    with pytest.raises(CorruptWeightsError, match=needle) as err:
        metalib.pretrained("proto", directory=tmp_path)
    _one_line(err)


def test_save_pretrained_refuses_a_builder_outside_the_list(tmp_path):
    with pytest.raises(ValueError, match="only metalib"):
        save_pretrained("x", MAML(models.sinusoid_mlp()), "metalib.io:atomic_write_json", info=SPEC,
                        directory=tmp_path)
    assert not (tmp_path / "MANIFEST.json").exists()


def test_every_shipped_entry_names_an_allowed_constructor():
    from metalib.pretrained import BUILDERS, check_builder, manifest

    for name, entry in manifest().items():
        assert entry["builder"] in BUILDERS, name
        check_builder(entry["builder"], entry["builder_kwargs"])


# ----------------------------------------------------------------------------- the ugly ones
def test_an_entry_without_sha256_is_one_clear_line(tmp_path):
    manifest = _sine(tmp_path)
    _edit(manifest, "demo", sha256=None)
    with pytest.raises(CorruptWeightsError, match="records no sha256") as err:
        metalib.pretrained("demo", directory=tmp_path)
    _one_line(err)
    _edit(manifest, "demo", sha256=12)
    with pytest.raises(CorruptWeightsError, match="records no sha256"):
        metalib.pretrained("demo", directory=tmp_path)


def test_weights_of_another_architecture_are_one_clear_line(tmp_path):
    manifest = _fewshot(tmp_path)
    data = json.loads(manifest.read_text())
    _edit(manifest, "proto", builder_kwargs={**data["proto"]["builder_kwargs"], "hidden": 16})
    with pytest.raises(CorruptWeightsError, match="do not fit the network the manifest describes") as err:
        metalib.pretrained("proto", directory=tmp_path)
    assert "shape" in _one_line(err)
    _edit(manifest, "proto", builder="metalib.algorithms.mann:PixelInput",
          builder_kwargs={"in_channels": 1, "image_size": 28})
    with pytest.raises(CorruptWeightsError, match="do not fit.*unexpected") as err:
        metalib.pretrained("proto", directory=tmp_path)
    _one_line(err)


def test_nan_weights_are_refused_at_ship(tmp_path):
    learner = MAML(models.sinusoid_mlp())
    with torch.no_grad():
        learner.model[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite") as err:
        save_pretrained("nan", learner, "metalib.models:sinusoid_mlp", info=SPEC, directory=tmp_path)
    _one_line(err)
    assert not (tmp_path / "nan.pt").exists() and not (tmp_path / "MANIFEST.json").exists()


@pytest.mark.parametrize("where", ["state_dict", "snapshots"])
def test_nan_weights_are_refused_at_load(tmp_path, where):
    from metalib.io import sha256_file

    manifest = _sine(tmp_path)
    blob = torch.load(tmp_path / "demo.pt", weights_only=True)
    sd = {k: v.clone() for k, v in blob["state_dict"].items()}
    first = next(iter(sd))
    sd[first][..., 0] = float("inf") if where == "snapshots" else float("nan")
    if where == "snapshots":
        blob["snapshots"] = {0: sd}
    else:
        blob["state_dict"] = sd
    torch.save(blob, tmp_path / "demo.pt")
    _edit(manifest, "demo", sha256=sha256_file(tmp_path / "demo.pt"))
    load = metalib.pretrained if where == "state_dict" else metalib.pretrained_snapshots
    with pytest.raises(CorruptWeightsError, match="non-finite") as err:
        load("demo", directory=tmp_path)
    _one_line(err)


# ----------------------------------------------------------------------------- ship names
BAD_NAMES = ["../../advtest-trav", "/tmp/advtest-abs", "sub/name", "..", ".", "", "a\\b", "name.pt/..", ".hidden",
             "x" * 200, 7]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_save_pretrained_takes_only_plain_names(tmp_path, bad):
    with pytest.raises(ValueError, match="plain name") as err:
        save_pretrained(bad, MAML(models.sinusoid_mlp()), "metalib.models:sinusoid_mlp", info=SPEC,
                        directory=tmp_path / "w")
    _one_line(err)
    assert not (tmp_path / "w").exists() and not list(tmp_path.rglob("*.pt"))


@pytest.mark.parametrize("bad", ["../../advtest-trav", "/tmp/advtest-abs", "a/b", ".."])
def test_fewshot_ship_takes_only_plain_names(tmp_path, bad):
    from metalib.pretrained import check_ship_name

    with pytest.raises(ValueError, match="plain name"):
        check_ship_name(bad, tmp_path)
    # fewshot.ship itself checks before it writes anything
    with pytest.raises(ValueError, match="plain name"):
        fewshot.ship(bad, object(), object(), directory=tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_an_existing_name_is_replaced_only_with_overwrite(tmp_path):
    _sine(tmp_path)
    before = (tmp_path / "demo.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already ships 'demo'.*overwrite") as err:
        save_pretrained("demo", MAML(models.sinusoid_mlp()), "metalib.models:sinusoid_mlp", info=SPEC,
                        directory=tmp_path)
    _one_line(err)
    assert (tmp_path / "demo.pt").read_bytes() == before
    torch.manual_seed(1)
    save_pretrained("demo", MAML(models.sinusoid_mlp()), "metalib.models:sinusoid_mlp", info=SPEC,
                    directory=tmp_path, overwrite=True)
    assert (tmp_path / "demo.pt").read_bytes() != before


# the command lines: a bad --ship name is refused before any training, in one line
@pytest.fixture
def cli(train_fewshot_cli):
    return train_fewshot_cli


BASE = TINY_RUN_ARGS


@pytest.mark.parametrize("bad", ["../../advtest-trav", "/tmp/advtest-abs", "a/b", ".."])
def test_train_fewshot_ship_name_is_checked_before_training(cli, capsys, tmp_path, bad):
    code = cli.main(BASE + ["--run-dir", str(tmp_path / "run"), "--ship", bad, "--weights-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "plain name" in err[0], err
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "w").exists()


def test_train_fewshot_ship_over_an_existing_name_needs_overwrite(cli, capsys, tmp_path):
    _sine(tmp_path / "w", name="taken")
    code = cli.main(BASE + ["--run-dir", str(tmp_path / "run"), "--ship", "taken", "--weights-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "already ships 'taken'" in err[0] and "--overwrite" in err[0], err
    assert not (tmp_path / "run" / "last.pt").exists()
    assert cli.main(BASE + ["--run-dir", str(tmp_path / "run"), "--ship", "taken", "--overwrite",
                            "--weights-dir", str(tmp_path / "w")]) == 0
    assert metalib.pretrained_info("taken", directory=tmp_path / "w")["kind"] == "fewshot"


def _memory_lab(*args, cwd):
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "metalib.course.memory_lab", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["ship", "mann", "../../advtest-trav"], "plain name"),
    (["ship", "mann", "/tmp/advtest-abs"], "plain name"),
    (["ship", "mann", "a/b"], "plain name"),
    (["ship", "mann", ".."], "plain name"),
    (["ship", "mann", "mann-omniglot"], "already ships 'mann-omniglot'"),
    (["ship", "mann", "ok-name", "--minutes", "-1"], "--minutes must be a number > 0"),
    (["ship", "mann", "ok-name", "--minutes", "nan"], "--minutes must be a number > 0"),
    (["ship", "mann", "ok-name", "--threads", "0"], "--threads must be >= 1"),
])
def test_memory_lab_ship_refuses_bad_arguments_in_one_line(tmp_path, args, needle):
    r = _memory_lab(*args, cwd=tmp_path)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], r.stderr
    assert not list(tmp_path.rglob("*")), "nothing may be written"


@pytest.mark.parametrize("change, needle", [
    ({"learner": {"algorithm": "maml", "settings": {"frobnicate": 1}}}, "frobnicate"),
    ({"learner": {"algorithm": "nope", "settings": {}}}, "nope"),
    ({"learner": {"algorithm": "maml", "settings": {"loss_fn": "os.system"}}}, "unknown loss"),
    ({"learner": "maml"}, "cannot be rebuilt"),
])
def test_learner_settings_in_a_manifest_are_one_line_errors(tmp_path, change, needle):
    manifest = _sine(tmp_path)
    _edit(manifest, "demo", **change)
    with pytest.raises(CorruptWeightsError, match=needle) as err:
        metalib.pretrained("demo", directory=tmp_path)
    _one_line(err)


@pytest.mark.parametrize("config, needle", [({"algorithm": "protonet", "iterations": 1, "frobnicate": 2}, "frobnicate"),
                                            ([1, 2], "config"), ({"algorithm": "protonet", "iterations": -1}, "iterations")])
def test_a_bad_fewshot_config_in_a_manifest_is_one_line(tmp_path, config, needle):
    manifest = _fewshot(tmp_path)
    _edit(manifest, "proto", config=config)
    with pytest.raises(CorruptWeightsError, match=needle) as err:
        metalib.pretrained("proto", directory=tmp_path)
    _one_line(err)


# ----------------------------------------------------------------------------- learner settings are capped (#24)
def _deep(levels):
    v = 1
    for _ in range(levels):
        v = [v]
    return v


@pytest.mark.parametrize("settings, needle", [
    ({"inner_lr": 0.05, "loss_fn": "mse_loss", "pad": _deep(40)}, "nest deeper than 8 levels"),
    ({"inner_lr": 0.05, "loss_fn": "mse_loss", "pad": list(range(5000))}, "more than 1,000 values"),
    ({"inner_lr": 0.05, "loss_fn": "mse_loss", "pad": "x" * 20_000}, "characters, more than 16,000"),
])
def test_learner_settings_in_a_manifest_are_size_capped(tmp_path, settings, needle):
    manifest = _sine(tmp_path)
    _edit(manifest, "demo", learner={"algorithm": "maml", "settings": settings})
    with pytest.raises(CorruptWeightsError, match=needle) as err:
        metalib.pretrained("demo", directory=tmp_path)
    assert len(_one_line(err)) < 300


def _mann(directory: Path, name="mann") -> Path:
    cfg = fewshot.default_config("mann", n_way=3, k_shot=1, iterations=1, image_size=8,
                                 options=dict(controller_size=8, memory_slots=6, memory_size=4, read_heads=1))
    torch.manual_seed(0)
    save_pretrained(name, fewshot.build_learner(cfg), info={"kind": "fewshot", "config": cfg.to_dict()},
                    directory=directory)
    return directory / "MANIFEST.json"


@pytest.mark.parametrize("options", [dict(controller_size=10**6), dict(memory_size=10**7)])
def test_a_manifest_cannot_ask_for_a_huge_learner_through_its_settings(tmp_path, options):
    """The network's constructor arguments were capped, the learner's own settings were not: MANN with a
    controller of a million units (16 TB of weights). The learner is built on the meta device first and counted."""
    manifest = _mann(tmp_path)
    data = json.loads(manifest.read_text())
    data["mann"]["config"].update(options)   # the typed config (issue 23): the learner's settings are fields
    manifest.write_text(json.dumps(data))
    # the weight cap (a huge controller) or the memory cap (a wide memory: MANN's MAX_MEMORY) refuses it
    with pytest.raises(CorruptWeightsError, match="more than any metalib learner|more than metalib's cap") as err:
        metalib.pretrained("mann", directory=tmp_path)
    _one_line(err)


def test_a_manifest_cannot_ask_for_a_huge_mann_memory(tmp_path):
    """MANN's memory (slots x width) is allocated per sequence when it predicts, so the weight cap does not see
    it: a manifest asking for 10^9 slots is refused in one line when the learner is built, before any call."""
    manifest = _mann(tmp_path)
    data = json.loads(manifest.read_text())
    data["mann"]["config"]["memory_slots"] = 10**9
    manifest.write_text(json.dumps(data))
    with pytest.raises((CorruptWeightsError, ValueError), match="memory_slots x memory_size") as err:
        metalib.pretrained("mann", directory=tmp_path)
    _one_line(err)


def test_the_learner_size_cap_is_checked_before_building(tmp_path, monkeypatch):
    """The same check with the cap lowered, so that the learner before the fix (built for real, then its
    weights refused as another architecture's) fits in memory: the cap, not the loading, refuses it."""
    pt = importlib.import_module("metalib.pretrained")  # (metalib.pretrained is also the function)

    manifest = _mann(tmp_path)
    data = json.loads(manifest.read_text())
    data["mann"]["config"]["controller_size"] = 200
    manifest.write_text(json.dumps(data))
    monkeypatch.setattr(pt, "MAX_PARAMETERS", 100_000)
    with pytest.raises(CorruptWeightsError, match="more than any metalib learner"):
        metalib.pretrained("mann", directory=tmp_path)


def test_every_shipped_entry_is_within_the_settings_caps():
    pt = importlib.import_module("metalib.pretrained")  # (metalib.pretrained is also the function)

    for name, info in json.loads((WEIGHTS_DIR / "MANIFEST.json").read_text()).items():
        for part in ("config", "learner"):
            if part in info:
                pt.check_settings(info[part], f"{name} {part}")

import pytest
import torch
import torch.nn.functional as F

import metalib
from metalib import MAML, models
from metalib.pretrained import ChecksumMismatchError, CorruptWeightsError, save_pretrained

SPEC = {"learner": {"algorithm": "maml", "settings": {"inner_lr": 0.05, "inner_steps": 2, "loss_fn": "mse_loss"}}}


def test_save_load_roundtrip_and_checksum(tmp_path):
    torch.manual_seed(0)
    m = models.sinusoid_mlp()
    snaps = {0: {k: v.clone() for k, v in m.state_dict().items()}}
    entry = save_pretrained("demo", MAML(m), "metalib.models:sinusoid_mlp", info={"seed": 0, **SPEC},
                            snapshots=snaps, directory=tmp_path)
    assert entry["seed"] == 0 and len(entry["sha256"]) == 64
    loaded = metalib.pretrained("demo", directory=tmp_path)
    # the learner comes back with its settings, its loss and its network's weights
    assert isinstance(loaded, MAML) and (loaded.inner_lr, loaded.inner_steps) == (0.05, 2)
    assert loaded.loss_fn is F.mse_loss
    for (k, a), b in zip(m.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert list(metalib.pretrained_snapshots("demo", directory=tmp_path)) == [0]
    assert metalib.list_pretrained(tmp_path) == ["demo"]
    # one flipped byte is caught
    path = tmp_path / "demo.pt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        metalib.pretrained("demo", directory=tmp_path)


def test_a_network_builds_itself_from_its_spec(tmp_path):
    torch.manual_seed(0)
    net = models.Conv4(1, 5, hidden=8, image_size=16)
    save_pretrained("conv", MAML(net), info={"learner": {"algorithm": "fomaml", "settings": {"inner_lr": 0.1}}},
                    directory=tmp_path)
    back = metalib.pretrained("conv", directory=tmp_path)
    assert back.first_order and back.model.head.out_features == 5
    assert metalib.pretrained_info("conv", directory=tmp_path)["builder_kwargs"] == {
        "in_channels": 1, "n_classes": 5, "hidden": 8, "image_size": 16}


def test_an_entry_that_cannot_be_rebuilt_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        save_pretrained("x", MAML(models.sinusoid_mlp()), "metalib.models:sinusoid_mlp", info={}, directory=tmp_path)
    assert not (tmp_path / "x.pt").exists()


def test_unknown_name_lists_what_exists(tmp_path):
    with pytest.raises(KeyError, match="no shipped weights"):
        metalib.pretrained("nope", directory=tmp_path)


def test_builder_must_be_metalib(tmp_path):
    with pytest.raises(ValueError, match="only metalib"):
        save_pretrained("x", MAML(models.sinusoid_mlp()), "os:system", info=SPEC, directory=tmp_path)


@pytest.mark.parametrize("name", metalib.list_pretrained())
def test_every_shipped_weight_file_loads_as_a_learner(name):
    learner = metalib.pretrained(name)
    assert isinstance(learner, metalib.Learner) and isinstance(learner.model, torch.nn.Module)


def _shipped(tmp_path):
    torch.manual_seed(0)
    save_pretrained("demo", MAML(models.sinusoid_mlp()), "metalib.models:sinusoid_mlp", info=SPEC, directory=tmp_path)
    return tmp_path / "MANIFEST.json"


def test_a_manifest_path_outside_the_weights_folder_is_refused(tmp_path):
    import json

    manifest = _shipped(tmp_path / "w")
    entry = json.loads(manifest.read_text())
    (tmp_path / "outside.pt").write_bytes((tmp_path / "w" / "demo.pt").read_bytes())
    for bad in ("../outside.pt", str(tmp_path / "outside.pt"), "sub/demo.pt"):
        entry["demo"]["file"] = bad
        manifest.write_text(json.dumps(entry))
        with pytest.raises(CorruptWeightsError, match="not a file in"):
            metalib.pretrained("demo", directory=tmp_path / "w")


def test_a_corrupt_manifest_is_one_clear_error(tmp_path):
    manifest = _shipped(tmp_path)
    manifest.write_text('{"demo": {"file": ')
    with pytest.raises(CorruptWeightsError, match="not valid JSON.*git checkout"):
        metalib.list_pretrained(tmp_path)
    manifest.write_text("[1, 2]")
    with pytest.raises(CorruptWeightsError, match="not a manifest"):
        metalib.pretrained("demo", directory=tmp_path)


def test_a_refused_weights_file_never_advises_weights_only_false(tmp_path):
    import json

    from metalib.io import sha256_file

    manifest = _shipped(tmp_path)
    torch.save({"state_dict": {}, "evil": ChecksumMismatchError("x")}, tmp_path / "demo.pt")  # not plain data
    entry = json.loads(manifest.read_text())
    entry["demo"]["sha256"] = sha256_file(tmp_path / "demo.pt")
    manifest.write_text(json.dumps(entry))
    with pytest.raises(CorruptWeightsError) as err:
        metalib.pretrained("demo", directory=tmp_path)
    assert "weights_only" not in str(err.value) and "not loaded" in str(err.value)

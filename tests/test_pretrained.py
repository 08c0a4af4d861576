import pytest
import torch

import metalib
from metalib import models
from metalib.pretrained import ChecksumMismatchError, save_pretrained


def test_save_load_roundtrip_and_checksum(tmp_path):
    torch.manual_seed(0)
    m = models.sinusoid_mlp()
    snaps = {0: {k: v.clone() for k, v in m.state_dict().items()}}
    entry = save_pretrained("demo", m, "metalib.models:sinusoid_mlp", info={"seed": 0}, snapshots=snaps, directory=tmp_path)
    assert entry["seed"] == 0 and len(entry["sha256"]) == 64
    loaded = metalib.pretrained("demo", directory=tmp_path)
    for (k, a), b in zip(m.state_dict().items(), loaded.state_dict().values()):
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


def test_unknown_name_lists_what_exists(tmp_path):
    with pytest.raises(KeyError, match="no shipped weights"):
        metalib.pretrained("nope", directory=tmp_path)


def test_builder_must_be_metalib(tmp_path):
    with pytest.raises(ValueError, match="only metalib"):
        save_pretrained("x", models.sinusoid_mlp(), "os:system", directory=tmp_path)


@pytest.mark.parametrize("name", metalib.list_pretrained())
def test_every_shipped_weight_file_loads_and_matches_its_checksum(name):
    model = metalib.pretrained(name)
    assert isinstance(model, torch.nn.Module)

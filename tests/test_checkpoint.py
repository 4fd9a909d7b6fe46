"""Weights-only, atomic, tamper-evident checkpoints."""

import os
import pickle

import pytest
import torch

from qtnn import QtnnError
from qtnn.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    p = tmp_path / "ck.pt"
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 2, "losses": [1.0, 0.5], "name": "x"}
    save_checkpoint(p, state)
    back = load_checkpoint(p)
    assert back["epoch"] == 2 and back["losses"] == [1.0, 0.5]
    torch.testing.assert_close(back["model"]["w"], torch.arange(4.0))
    assert [f for f in os.listdir(tmp_path)] == ["ck.pt"]  # no temporary files left


def test_tampered_file_is_refused(tmp_path):
    p = tmp_path / "ck.pt"
    save_checkpoint(p, {"w": torch.ones(1000)})
    data = bytearray(p.read_bytes())
    i = data.find(b"\x00\x00\x80\x3f")  # a float32 1.0 inside the payload
    data[i + 3] = 0x40  # 1.0 -> 2.0
    p.write_bytes(bytes(data))
    with pytest.raises(QtnnError, match="not a readable qtnn checkpoint|was modified or is corrupt"):
        load_checkpoint(p)


def test_payload_swapped_with_valid_container_is_refused(tmp_path):
    # A well-formed file whose payload was replaced: only the stored SHA-256 can tell.
    p = tmp_path / "ck.pt"
    save_checkpoint(p, {"w": torch.ones(3)})
    outer = torch.load(p, weights_only=True)
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"w": torch.zeros(3)})
    outer["payload"] = torch.load(other, weights_only=True)["payload"]
    torch.save(outer, p)
    with pytest.raises(QtnnError, match="was modified or is corrupt: its SHA-256 does not match"):
        load_checkpoint(p)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"x": _Evil()}, f, protocol=2)
    with pytest.raises(QtnnError, match="not a readable qtnn checkpoint"):
        load_checkpoint(p)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(QtnnError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    p = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, p)
    with pytest.raises(QtnnError, match="is not a qtnn checkpoint"):
        load_checkpoint(p)


def test_failed_write_keeps_previous(tmp_path, monkeypatch):
    p = tmp_path / "ck.pt"
    save_checkpoint(p, {"epoch": 1})
    import qtnn.io

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(qtnn.io.os, "fsync", boom)  # fails after the temporary file is written
    with pytest.raises(RuntimeError):
        save_checkpoint(p, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(p)["epoch"] == 1
    assert os.listdir(tmp_path) == ["ck.pt"]

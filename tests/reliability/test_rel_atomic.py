"""Nothing lost: atomic files, killed writers, tampered checkpoints, and resuming a killed training.

* A process killed (SIGKILL) half-way through writing a checkpoint leaves the previous checkpoint
  loadable; a writer killed at random moments never leaves a file that fails to load.
* Every exporter (checkpoints, MPS/MPO ``.npz``, staircase ``.npz``, QASM, JSON, PNG) writes a
  temporary file and renames it: a failure before the rename leaves the old file as it was and
  no temporary file behind.
* A training process killed in the middle of an epoch resumes from its last checkpoint, in a new
  process, to the same loss curve and the same parameters (bit for bit) as an uninterrupted run.
* Loading never executes code; a tampered checkpoint is refused with a clear error.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.checkpoint import load_checkpoint, save_checkpoint

CHILD = str(Path(__file__).with_name("_child.py"))
ROOT = Path(__file__).resolve().parents[2]


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, CHILD, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"child did not reach {path.name} within {timeout} s")
        time.sleep(0.01)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _leftovers(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != name)


# ------------------------------------------------------------- killed checkpoint writers
def test_kill_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    path, marker = tmp_path / "ck.pt", tmp_path / "half-written"
    proc = _spawn("slow-checkpoint", str(path), str(marker))
    _wait_for(marker, proc)                       # epoch 2 is half on disk
    _kill(proc)
    back = load_checkpoint(path)                  # the previous checkpoint, whole
    assert back["epoch"] == 1 and torch.equal(back["w"], torch.full((1000,), 1.0))
    (partial,) = [p for p in tmp_path.iterdir() if p.name.startswith(".ck.pt.") and p.suffix == ".tmp"]
    assert partial.stat().st_size > 0                 # the half-written temporary file ...
    with pytest.raises(QtnnError, match="not a readable qtnn checkpoint"):
        load_checkpoint(partial)                      # ... is never mistaken for a checkpoint


def test_writer_killed_at_random_moments_never_leaves_a_bad_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    path, marker = tmp_path / "ck.pt", tmp_path / "first"
    seen = []
    for _round in range(3):
        marker.unlink(missing_ok=True)
        proc = _spawn("checkpoint-loop", str(path), str(marker))
        _wait_for(marker, proc)
        time.sleep(float(rng.uniform(0.05, 0.4)))
        _kill(proc)
        back = load_checkpoint(path)              # always a whole checkpoint
        assert torch.equal(back["w"], torch.full((500_000,), float(back["epoch"])))
        seen.append(back["epoch"])
    assert all(e >= 1 for e in seen)


# ------------------------------------------------------------------ every exporter
def _exporters(tmp_path):
    from qtnn.analysis import save_qasm
    from qtnn.analysis.plot import save_figure
    from qtnn.io import write_json
    from qtnn.staircase import Staircase
    from qtnn.tn import MPS, save_tt

    def figure(v):
        from matplotlib.figure import Figure

        fig = Figure()
        fig.add_subplot().plot([0, v])
        return fig

    return {
        "checkpoint": (tmp_path / "ck.pt", lambda p, v: save_checkpoint(p, {"v": v}),
                       lambda p: load_checkpoint(p)["v"]),
        "tt-npz": (tmp_path / "psi.npz", lambda p, v: save_tt(MPS.random(3, 2, seed=v), p),
                   lambda p: __import__("qtnn.tn", fromlist=["load_tt"]).load_tt(p).cores[0].sum()),
        "staircase-npz": (tmp_path / "c.npz", lambda p, v: Staircase.random(3, 1, seed=v).save(p),
                          lambda p: Staircase.load(p).gates.sum()),
        "qasm": (tmp_path / "c.qasm", lambda p, v: save_qasm(Staircase.random(3, 1, seed=v), p),
                 lambda p: Path(p).read_text()),
        "json": (tmp_path / "r.json", lambda p, v: write_json(p, {"v": v}), lambda p: json.loads(Path(p).read_text())),
        "png": (tmp_path / "f.png", lambda p, v: save_figure(figure(v), p), lambda p: Path(p).read_bytes()),
    }


@pytest.mark.parametrize("kind", ["checkpoint", "tt-npz", "staircase-npz", "qasm", "json", "png"])
def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, kind):
    path, save, read = _exporters(tmp_path)[kind]
    save(path, 1)
    before = read(path)
    real_fsync = os.fsync

    def power_cut(fd):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "fsync", power_cut)    # every writer fsyncs its temporary file before the rename
    with pytest.raises(OSError, match="simulated"):
        save(path, 2)
    monkeypatch.setattr(os, "fsync", real_fsync)
    after = read(path)
    assert (before == after).all() if isinstance(before, np.ndarray) else before == after
    assert _leftovers(tmp_path, path.name) == []
    save(path, 2)                                  # and the next write goes through
    assert _leftovers(tmp_path, path.name) == []


def test_interrupt_during_write_also_cleans_up(tmp_path, monkeypatch):
    """KeyboardInterrupt (Ctrl-C) in the middle of a write: old file kept, temporary removed."""
    from qtnn.io import atomic_open

    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_open(p, "w") as f:
        f.write("new, half")
        raise KeyboardInterrupt
    assert p.read_text() == "old" and _leftovers(tmp_path, "a.txt") == []


# -------------------------------------------------------------------- tampering
def test_tampered_checkpoint_is_refused(tmp_path):
    p = tmp_path / "ck.pt"
    save_checkpoint(p, {"w": torch.arange(1000.0), "epoch": 4})
    outer = torch.load(p, weights_only=True)
    payload = bytearray(outer["payload"])
    i = payload.find(np.float32(500.0).tobytes())
    payload[i:i + 4] = np.float32(-1.0).tobytes()           # one weight changed, hash kept
    outer["payload"] = bytes(payload)
    torch.save(outer, p)
    with pytest.raises(QtnnError, match=r"checkpoint '.*ck.pt' was modified or is corrupt: its SHA-256 does "
                                        r"not match"):
        load_checkpoint(p)


def test_checkpoint_with_code_is_refused_and_never_executed(tmp_path):
    flag = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {flag}",))

    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:                                  # a plain pickle ...
        pickle.dump({"model": Evil()}, f, protocol=2)
    with pytest.raises(QtnnError, match="not a readable qtnn checkpoint"):
        load_checkpoint(p)
    outer = {"format": "qtnn.checkpoint/1", "payload": pickle.dumps({"x": Evil()}, protocol=2)}
    import hashlib

    outer["sha256"] = hashlib.sha256(outer["payload"]).hexdigest()
    torch.save(outer, p)                                      # ... or smuggled inside a valid container
    with pytest.raises(QtnnError, match="holds objects a weights-only load refuses"):
        load_checkpoint(p)
    assert not flag.exists()


def test_unloadable_state_is_refused_at_save_time(tmp_path):
    p = tmp_path / "ck.pt"
    save_checkpoint(p, {"epoch": 1})
    with pytest.raises(QtnnError, match="state holds objects that a weights-only load refuses"):
        save_checkpoint(p, {"epoch": 2, "module": torch.nn.Linear(2, 2)})
    assert load_checkpoint(p)["epoch"] == 1 and _leftovers(tmp_path, "ck.pt") == []


# ---------------------------------------------------------- resuming a killed training
def _run_train(out: Path, *extra: str) -> dict:
    proc = _spawn("train", str(out), *extra)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out.read_text())


def test_training_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    full = _run_train(tmp_path / "full.json")
    ck, marker = tmp_path / "ck.pt", tmp_path / "epoch2"
    proc = _spawn("train", str(tmp_path / "never.json"), "--checkpoint", str(ck), "--marker", str(marker))
    _wait_for(marker, proc, timeout=300)
    _kill(proc)                                                # two optimizer steps into epoch 3
    assert not (tmp_path / "never.json").exists()
    resumed = _run_train(tmp_path / "resumed.json", "--checkpoint", str(ck), "--resume", str(ck))
    assert resumed["resumed_from"] >= 2
    assert resumed["losses"] == full["losses"]                 # the same curve, bit for bit
    assert resumed["params"] == full["params"]                 # and the same parameters


def test_failed_catalogue_build_leaves_the_catalogue_intact(tmp_path, monkeypatch):
    """``qtnn circuits build`` generates into a staging folder: a failure half-way changes nothing."""
    import qtnn.apps.catalogue as cat
    from qtnn.staircase import Staircase

    out = tmp_path / "circuits"
    out.mkdir()
    (out / "manifest.json").write_text('{"format": "old"}')
    (out / "heisenberg_n8_D1.qasm").write_text("old qasm")

    def some_rows(staging, step):
        _, qc = cat._write_qasm(staging, "heisenberg_n8_D1.qasm", Staircase.random(3, 1, seed=0))
        return [cat._row(staging, "heisenberg_n8_D1.qasm", qc, kind="state_preparation", n_qubits=3,
                         layers=1, fidelity=1.0, what="a test circuit")]

    def crash(staging, step):
        raise RuntimeError("killed while training the digits model")

    monkeypatch.setattr(cat, "_heisenberg_rows", some_rows)
    monkeypatch.setattr(cat, "_digits_rows", crash)
    with pytest.raises(RuntimeError, match="killed while training"):
        cat.build_catalogue(out, progress=False, reference_blas=False)   # the patches apply here
    assert (out / "manifest.json").read_text() == '{"format": "old"}'
    assert (out / "heisenberg_n8_D1.qasm").read_text() == "old qasm"
    assert sorted(p.name for p in out.iterdir()) == ["heisenberg_n8_D1.qasm", "manifest.json"]

    monkeypatch.setattr(cat, "_digits_rows", lambda staging, step: [])
    manifest = cat.build_catalogue(out, progress=False, reference_blas=False)   # a finished build replaces it
    assert [r["file"] for r in manifest["circuits"]] == ["heisenberg_n8_D1.qasm"]
    assert (out / "heisenberg_n8_D1.qasm").read_text().startswith("OPENQASM 3.0;")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "heisenberg_n8_D1.qasm", "manifest.json"]


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    import stat

    from qtnn.io import write_json

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    new = tmp_path / "new.json"
    write_json(new, {"a": 1})  # a new file: 0666 & ~umask, like open(), not mkstemp's 0600
    assert mode(new) == mode(plain)
    os.chmod(new, 0o640)
    write_json(new, {"a": 2})  # a replaced file keeps its permissions
    assert mode(new) == 0o640 and json.loads(new.read_text()) == {"a": 2}

"""Determinism: the same inputs and seeds give bit-identical results in separate processes.

Two fresh interpreters (different ``PYTHONHASHSEED``, so no dict or set order can leak in) run the
classical paths -- TT-SVD, MPO truncation and entropies, the Heisenberg ground state, random MPS,
the three state-preparation encoders, the QASM 2 / 3 text of the circuits, disentangling, and a
training curve with its final parameters -- and write SHA-256 digests of every result; the two
sets of digests must be equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = str(Path(__file__).with_name("_child.py"))
ROOT = Path(__file__).resolve().parents[2]


def test_classical_paths_are_bit_identical_across_processes(tmp_path):
    procs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed,
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        out = tmp_path / f"run{seed}.json"
        procs.append((out, subprocess.Popen([sys.executable, CHILD, "determinism", str(out)], cwd=ROOT,
                                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    results = []
    for out, proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
        results.append(json.loads(out.read_text()))
    a, b = results
    assert set(a) == {"tt_svd", "mpo_from_dense", "mpo_truncate", "entropies", "heisenberg", "mps_random",
                      "encode_ran", "encode_sweep", "encode_iterative", "qasm2", "qasm3",
                      "staircase_random_qasm", "disentangle", "training_curve", "training_params"}
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"results that differ between two runs: {differ}"

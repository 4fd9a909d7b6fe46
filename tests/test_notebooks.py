"""Execute every notebook in ``notebooks/`` top to bottom (``docs/design/architecture.md``: notebooks run in CI).

Each notebook runs in a fresh kernel started from *this* interpreter (a
kernelspec written to a temporary directory, so whatever ``python3`` kernel is
installed elsewhere is never used), with ``MPLBACKEND=Agg`` so that no plot
opens a window, and with a temporary directory as its working directory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

#: Seconds one cell may run before the notebook fails (each notebook aims for well under a minute).
CELL_TIMEOUT = 300

#: Environment of the kernel.  ``MPLBACKEND=Agg``: plots never open a window.  One BLAS/OpenMP
#: thread: the notebooks' matrices are small, and on a busy 2-core machine two OpenMP threads that
#: spin-wait for each other made torch training 5-20x slower than one thread.
KERNEL_ENV = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1"}


def _kernel_manager(spec_dir: Path):
    """A kernel manager whose ``python3`` kernel is ``sys.executable`` with ``MPLBACKEND=Agg``."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kdir = spec_dir / "kernels" / "python3"
    kdir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (qtnn tests)",
        "language": "python",
        "env": KERNEL_ENV,
        "metadata": {"debugger": False},
    }
    (kdir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(spec_dir / "kernels")])
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks found")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped(path: Path) -> None:
    """Notebooks are committed valid and without outputs or execution counts."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: cell {i} was committed with outputs"
            assert cell.get("execution_count") is None, \
                f"{path.name}: cell {i} was committed with an execution count"


@pytest.mark.slow
@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks found")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    """The notebook runs top to bottom in a fresh kernel and writes nothing into its directory."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    nb = nbformat.read(path, as_version=4)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path / "jupyter"), timeout=CELL_TIMEOUT,
                                     kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    client.execute(cleanup_kc=True)  # a kernel manager passed in is not shut down by default
    print(f"{path.name}: {time.perf_counter() - t0:.1f} s")

    left = sorted(p.name for p in workdir.iterdir())
    assert not left, f"{path.name} wrote files into its working directory: {left}"

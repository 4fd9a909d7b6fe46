"""The documentation site in ``docs/`` builds without a warning, and refers to nothing outside the repository.

``make docs`` builds the site with the notebooks executed (their outputs and plots rendered);
here the notebooks are rendered without executing them (``nb_execution_mode=off``), since
``tests/test_notebooks.py`` already runs every one of them: what this test adds is that every
page, every docstring of the public API (``__all__`` of each public module) and every
generated table goes through Sphinx with ``-W``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Files a reader of the repository sees, which must not send them to a file that is not in it.
READER_FILES = [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb")),
                *sorted(DOCS.glob("**/*.md")), *sorted((ROOT / "examples").glob("*.py")),
                DOCS / "conf.py", *sorted((DOCS / "_ext").glob("*.py")),
                *sorted((ROOT / "qtnn").glob("**/*.py"))]   # docstrings are read too
#: Design notes and seed papers live outside the repository; their content is in docs/design.
OUTSIDE = re.compile(r"DESIGN\.md|\bshared/|\bseeds/")


def _generated(path: Path) -> bool:
    rel = path.relative_to(ROOT).parts
    return rel[:2] in {("docs", "_build"), ("docs", "api"), ("docs", "notebooks"), ("docs", "_generated")}


@pytest.mark.parametrize("path", [p for p in READER_FILES if p.exists() and not _generated(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    hits = sorted({m.group(0) for m in OUTSIDE.finditer(text)})
    assert not hits, f"{path.relative_to(ROOT)} refers to {hits}, which are not in the repository"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")
    for mod in ("furo", "myst_nb", "numpydoc"):
        pytest.importorskip(mod, reason=f"{mod} (docs extra) is not installed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                                          if p)}
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
           "-D", "nb_execution_mode=off", "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"sphinx-build failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    html = tmp_path / "html"
    for page in ("index.html", "design/math.html", "api/qtnn.tn.html", "benchmarks.html", "cli.html"):
        assert (html / page).exists(), f"{page} was not built"
    api = (html / "api" / "qtnn.tn.html").read_text(encoding="utf-8")
    import qtnn.tn

    for name in qtnn.tn.__all__:
        assert f'id="qtnn.tn.{name}"' in api, f"qtnn.tn.{name} is missing from the API reference"

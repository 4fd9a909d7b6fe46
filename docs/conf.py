"""Sphinx configuration of the qtnn documentation (``make docs``).

The site is built from three sources, all inside this repository:

* the pages under ``docs/`` (design, conventions, math, benchmarks), in MyST Markdown;
* the API reference, generated at build time from each public package's ``__all__``
  (``docs/_ext/qtnn_docs.py``), so moving a private module never breaks it;
* the notebooks of ``notebooks/``, copied into ``docs/notebooks/`` (not committed) and
  executed by myst-nb with a cache in ``docs/_build/.jupyter_cache``: the first build runs
  them (a few minutes on 2 cores), later builds re-run only notebooks that changed.
  ``-D nb_execution_mode=off`` renders them without outputs (what ``tests/test_docs.py``
  does, since the test suite already executes every notebook).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# Document (and execute the notebooks against) the checkout these docs belong to, whatever
# copy of qtnn is installed.  The notebook kernels inherit PYTHONPATH.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
# Notebook kernels: one BLAS/OpenMP thread (the notebooks' matrices are small; on a busy
# 2-core machine spinning OpenMP threads made torch training several times slower).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import qtnn  # noqa: E402

project = "qtnn"
author = "the qtnn developers"
copyright = "the qtnn developers, Apache-2.0"
version = release = qtnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
    "qtnn_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# --- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"qtnn {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# --- autodoc / numpydoc ----------------------------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "none"          # the numpydoc "Parameters" sections carry the types
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False  # torch.nn.Module's own docstrings are not qtnn's
autosummary_generate = False        # the API pages are written by qtnn_docs
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

# --- MyST / myst-nb ------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_in_temp = True         # the notebooks must not write into the source tree
nb_execution_raise_on_error = True  # a failing notebook fails the build
nb_merge_streams = True
suppress_warnings = ["mystnb.unknown_mime_type"]

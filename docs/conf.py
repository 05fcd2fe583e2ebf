"""Sphinx configuration of the documentation site.

Build it strictly (warnings are errors) from the repository root:
``python3 -m sphinx -W --keep-going -b html -c docs . docs/_build/html``. The
source folder is the repository itself, so README.md and the other Markdown
documents are the pages, with their links and figures as they are on disk.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import metastructure  # noqa: E402

project = "metastructure"
author = "The metastructure developers"
copyright = "the metastructure developers"
release = metastructure.__version__
version = release

root_doc = "README"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "metastructure_docs",
]

# only these files are pages; everything else in the repository is source code, data or figures
include_patterns = [
    "README.md", "CHANGELOG.md", "docs/**.md", "docs/**.rst", "theory/README.md", "bench/README.md",
    "simulations/README.md", "simulations/CONTRIBUTING.md", "simulations/CLUSTER.md",
    "examples/README.md", "examples/*.ipynb",
]
exclude_patterns = ["docs/_build", "figures/store", "figures/quick", ".git", "**/.ipynb_checkpoints"]

# Markdown and notebooks (MyST): GitHub-style heading anchors, so the documents' own links resolve
myst_heading_anchors = 4
myst_enable_extensions = ["dollarmath"]
nb_execution_mode = "off"  # the notebooks are rendered with their committed outputs (the tests execute them)

# the API reference from the docstrings (Google style, maths in :math: roles)
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"metastructure {release}"
html_static_path = ["_static"]  # MathJax is copied in by the site extension (docs/_ext/metastructure_docs.py)
html_favicon = "_static/favicon.svg"
html_show_sourcelink = False

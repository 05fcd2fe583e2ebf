"""The site's own Sphinx extension: the front page's table of contents, offline maths, and the API coverage check.

* The front page is README.md as it stands on the repository's home page; the
  site's navigation (:data:`NAVIGATION`) is appended to it when Sphinx reads it,
  so the file itself stays plain Markdown.
* MathJax 3 (its single-file SVG build, which needs no font files) is copied
  from the ``django-static-mathjax`` package into the site's ``_static/mathjax/``:
  no page loads anything from the network.
* The coverage check (a warning, so an error in the strict build) fails the build when a public name of the API
  (:func:`public_api.undocumented`, the walk the house-rule tests use) has no
  entry in the reference.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from public_api import doc_modules, undocumented
from sphinx.errors import SphinxError
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: The front page's table of contents: (caption, documents relative to the repository root).
NAVIGATION = (
    ("Start", ("docs/install", "examples/README", "examples/01_your_mask", "examples/02_planning_an_annotation")),
    ("Theory and results", ("theory/README", "simulations/README", "bench/README")),
    ("Reference", ("docs/api/index",)),
    ("Develop", ("simulations/CONTRIBUTING", "simulations/CLUSTER", "CHANGELOG")),
)

#: The MathJax build the pages load, a path inside the package's ``es5`` folder.
MATHJAX_FILE = "tex-svg-full.js"


def mathjax_source() -> Path:
    """The MathJax file shipped by ``django-static-mathjax`` (a plain copy of MathJax 3; it needs no Django).

    Raises:
        SphinxError: the package is not installed (``pip install -e ".[docs]"``).
    """
    spec = importlib.util.find_spec("mathjax")
    path = Path(spec.origin).parent / "static" / "mathjax" / "es5" / MATHJAX_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise SphinxError(f"MathJax not found ({MATHJAX_FILE} of django-static-mathjax): pip install -e \".[docs]\"")
    return path


def _toctree(caption: str, docs) -> str:
    entries = "\n".join(f"/{d}" for d in docs)
    return f"\n\n```{{toctree}}\n:hidden:\n:caption: {caption}\n:maxdepth: 2\n\n{entries}\n```\n"


def _append_navigation(app, docname: str, source: list[str]) -> None:
    if docname == app.config.root_doc:
        source[0] += "".join(_toctree(c, d) for c, d in NAVIGATION)


def _use_mathjax(app, config) -> None:
    config.mathjax_path = f"mathjax/{MATHJAX_FILE}"


def _copy_mathjax(app) -> None:
    """Copy the MathJax file into the site's ``_static/mathjax/`` (the path the pages load it from)."""
    if app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(mathjax_source(), target / MATHJAX_FILE)


def _check_coverage(app, env) -> None:
    documented = set(env.get_domain("py").objects)
    missing = undocumented(documented, doc_modules())
    if missing:
        logger.warning("%d public name(s) have no entry in docs/api/: %s", len(missing), ", ".join(missing),
                       type="metastructure", subtype="coverage")


def _skip_record_fields(app, what, name, obj, skip, options):
    """A NamedTuple's field getters ("Alias for field number k") are documented by the class's Attributes section."""
    if what == "class" and (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def _redirect_index(app, exception) -> None:
    """``index.html`` opens the front page (the root document keeps README's name)."""
    if exception is None and app.builder.format == "html" and app.config.root_doc != "index":
        target = f"{app.config.root_doc}.html"
        # the site's icon here too: a page without one makes the browser ask for /favicon.ico (a 404)
        icon = Path(app.config.html_favicon or "").name
        link = f'<link rel="icon" href="_static/{icon}">' if icon else ""
        (Path(app.outdir) / "index.html").write_text(
            f'<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={target}">{link}'
            f'<title>metastructure</title><a href="{target}">metastructure</a>\n')


def setup(app):
    app.connect("config-inited", _use_mathjax)
    app.connect("builder-inited", _copy_mathjax)
    app.connect("source-read", _append_navigation)
    app.connect("env-check-consistency", _check_coverage)
    app.connect("autodoc-skip-member", _skip_record_fields)
    app.connect("build-finished", _redirect_index)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx configuration for the overparam_sklearn documentation.

Build (from the repository root; the gallery is not executed unless ``-D plot_gallery=1``)::

    python -m sphinx -b html -W --keep-going -D plot_gallery=0 doc doc/_build/html

or ``make -C doc html`` (``make -C doc html-noplot`` is the CI variant, ``make -C doc clean``).
"""

import os
import re
import sys
from pathlib import Path

from sphinx.util import logging

DOC = Path(__file__).resolve().parent
ROOT = DOC.parent
# Document the working tree, installed or not.
sys.path.insert(0, str(ROOT))

import overparam_sklearn  # noqa: E402

logger = logging.getLogger("overparam_sklearn.doc")

project = "overparam_sklearn"
author = "the overparam_sklearn developers"
copyright = "2026, the overparam_sklearn developers"
version = release = overparam_sklearn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "gen_modules/backreferences/*"]
root_doc = "index"
default_role = "literal"
html_theme = "alabaster"
html_static_path = []
html_title = f"overparam_sklearn {release}"
html_theme_options = {
    "description": "scikit-learn estimators from the theory of overparameterized networks",
    "fixed_sidebar": True,
}

# -- autodoc / autosummary / numpydoc -----------------------------------------------------------
# Stub pages for the API are written by _write_api_stubs below (one per public name that exists),
# not by autosummary: autosummary's generator reads api.rst directly and would turn each planned
# but not yet written name into a warning.
autosummary_generate = False
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
# numpydoc renders the members itself from the docstring sections; autosummary tables of all
# methods would duplicate sklearn's inherited ones.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- sphinx-gallery -------------------------------------------------------------------------------
# The gallery is built from ../examples/plot_*.py. CI does not execute it (plot_gallery=0, the
# default here); `-D plot_gallery=1` runs every example, as a person building locally may.
EXAMPLES = ROOT / "examples"
_HEADERS = [EXAMPLES / f"{stem}{ext}" for stem in ("GALLERY_HEADER", "README")
            for ext in (".rst", ".txt")]
HAS_GALLERY = any(p.exists() for p in _HEADERS)

sphinx_gallery_conf = {
    "examples_dirs": [os.path.relpath(EXAMPLES, DOC)] if HAS_GALLERY else [],
    "gallery_dirs": ["auto_examples"] if HAS_GALLERY else [],
    "filename_pattern": r"/plot_",
    "plot_gallery": "False",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("overparam_sklearn",),
    "remove_config_comments": True,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": False,
    "matplotlib_animations": False,
}

# -- keep the build warning-clean while the API grows --------------------------------------------
# api.rst lists every planned public name. Names not (yet) importable from overparam_sklearn are
# left out of the page with an info line instead of failing the build; a public name in
# overparam_sklearn.__all__ that api.rst does not list is a warning (the docs must follow the
# code).
_AUTOSUMMARY_ITEM = re.compile(r"^(\s{3,})([A-Za-z_][A-Za-z0-9_]*)\s*$")


def _filter_api(app, docname, source):
    if docname == "index" and not HAS_GALLERY:
        source[0] = source[0].replace("   auto_examples/index\n", "")
        logger.info("[overparam_sklearn doc] examples/ has no GALLERY_HEADER.rst or README.txt; "
                    "the gallery is left out")
    if docname != "api":
        return
    text = source[0]
    out, listed, missing = [], set(), []
    in_autosummary = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary and stripped and not line.startswith(" "):
            in_autosummary = False
        match = _AUTOSUMMARY_ITEM.match(line.rstrip("\n")) if in_autosummary else None
        if match and not stripped.startswith(":"):
            name = match.group(2)
            listed.add(name)
            if not hasattr(overparam_sklearn, name):
                missing.append(name)
                continue
        out.append(line)
    if missing:
        logger.info("[overparam_sklearn doc] planned API names not importable yet, left out of "
                    "api.rst: " + ", ".join(missing))
    undocumented = sorted(set(overparam_sklearn.__all__) - listed)
    if undocumented:
        logger.warning("public names in overparam_sklearn.__all__ missing from doc/api.rst: "
                       + ", ".join(undocumented), location="api")
    source[0] = "".join(out)


_CLASS_STUB = """{name}
{underline}

.. currentmodule:: overparam_sklearn

.. autoclass:: {name}
   :members:
   :inherited-members:
   :special-members: __call__

.. minigallery:: overparam_sklearn.{name}
   :add-heading: Examples using ``{name}``
   :heading-level: -
"""

_FUNCTION_STUB = """{name}
{underline}

.. currentmodule:: overparam_sklearn

.. autofunction:: {name}

.. minigallery:: overparam_sklearn.{name}
   :add-heading: Examples using ``{name}``
   :heading-level: -
"""


def _write_api_stubs(app):
    """Write gen_modules/<name>.rst for every name listed in api.rst that exists."""
    import inspect

    text = (DOC / "api.rst").read_text()
    names = [m.group(2) for m in map(_AUTOSUMMARY_ITEM.match, text.splitlines()) if m]
    out_dir = DOC / "gen_modules"
    out_dir.mkdir(exist_ok=True)
    wanted = set()
    for name in names:
        obj = getattr(overparam_sklearn, name, None)
        if obj is None:
            continue
        wanted.add(f"overparam_sklearn.{name}.rst")
        template = _CLASS_STUB if inspect.isclass(obj) else _FUNCTION_STUB
        content = template.format(name=name, underline="=" * len(name))
        path = out_dir / f"overparam_sklearn.{name}.rst"
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
    for stale in out_dir.glob("*.rst"):  # a renamed or removed name leaves no orphan page
        if stale.name not in wanted:
            stale.unlink()


# Methods inherited from scikit-learn (score, get_metadata_routing, set_output, ...) carry
# :ref:/:term: roles that point into scikit-learn's own documentation. Without intersphinx (the
# build runs offline) they cannot resolve, so they are rendered as plain text.
_SKLEARN_ROLE = re.compile(r":(?:ref|term):`([^`<]*?)(?:\s*<[^`>]*>)?`")


def _plain_sklearn_roles(app, what, name, obj, options, lines):
    module = getattr(obj, "__module__", None) or ""
    if not module.startswith("sklearn"):
        return
    lines[:] = [_SKLEARN_ROLE.sub(lambda m: f"*{m.group(1).strip()}*", line) for line in lines]


# In "name : type" lines of numpydoc sections, a fitted-attribute name inside the type, as in
# "ndarray of shape (n_features_in_,)", is RST for a hyperlink reference and fails the build.
# Quote such names as literals (scikit-learn writes `n_features_in_` by hand for this reason).
_PARAM_LINE = re.compile(r"^(\s*[\w*, ]+ : )(.*)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?![`\w])")


def _quote_attribute_names_in_types(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        match = _PARAM_LINE.match(line)
        if match and "`" not in match.group(2):
            lines[i] = match.group(1) + _TRAILING_UNDERSCORE.sub(r"``\1``", match.group(2))


def setup(app):
    app.connect("builder-inited", _write_api_stubs)
    app.connect("autodoc-process-docstring", _plain_sklearn_roles)
    # before numpydoc (priority 500) rewrites the sections
    app.connect("autodoc-process-docstring", _quote_attribute_names_in_types, priority=400)
    app.connect("source-read", _filter_api)

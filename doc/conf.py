"""Sphinx configuration for the overparam_sklearn documentation.

Build (from the repository root; executes the gallery, as CI does)::

    python -m sphinx -b html -W --keep-going doc doc/_build/html

or ``make -C doc html`` (``make -C doc html-noplot`` skips the examples, ``make -C doc clean``).
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
# The gallery is built from ../examples/plot_*.py and every example is executed (CI included), so
# the built site shows the figures and an example that raises fails the build (sphinx-gallery
# reports the failures at the end; abort_on_example_error=False lets the others run first).
# `-D plot_gallery=0` skips the execution for a quick local build of the text.
EXAMPLES = ROOT / "examples"
_HEADERS = [EXAMPLES / f"{stem}{ext}" for stem in ("GALLERY_HEADER", "README")
            for ext in (".rst", ".txt")]
HAS_GALLERY = any(p.exists() for p in _HEADERS)

sphinx_gallery_conf = {
    "examples_dirs": [os.path.relpath(EXAMPLES, DOC)] if HAS_GALLERY else [],
    "gallery_dirs": ["auto_examples"] if HAS_GALLERY else [],
    "filename_pattern": r"/plot_",
    "plot_gallery": "True",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("overparam_sklearn",),
    "remove_config_comments": True,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": False,
    "matplotlib_animations": False,
}

# -- the API reference lists every public name, and only names that exist --------------------
# api.rst is checked against the code on every build: a listed name that does not import, or a
# public name (in ``__all__`` of the package or of a public subpackage) that api.rst does not
# list, fails the build with the names; nothing is dropped silently.
_AUTOSUMMARY_ITEM = re.compile(r"^(\s{3,})([A-Za-z_][A-Za-z0-9_]*)\s*$")
_CURRENTMODULE = re.compile(r"^\.\.\s+currentmodule::\s+(\S+)\s*$")
#: Modules whose ``__all__`` is public API (the package re-exports most of it at the top).
PUBLIC_MODULES = ("overparam_sklearn", "overparam_sklearn.kernels", "overparam_sklearn.theory",
                  "overparam_sklearn.pfn", "overparam_sklearn.data_diet", "overparam_sklearn.dkm")


class APIReferenceError(Exception):
    """doc/api.rst and the public API disagree."""


def api_entries(text=None):
    """``[(module, name)]`` of the autosummary items of api.rst, in order."""
    text = (DOC / "api.rst").read_text() if text is None else text
    module, in_autosummary, out = "overparam_sklearn", False, []
    for line in text.splitlines():
        stripped = line.strip()
        match = _CURRENTMODULE.match(stripped)
        if match:
            module = match.group(1)
        if stripped.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary and stripped and not line.startswith(" "):
            in_autosummary = False
        item = _AUTOSUMMARY_ITEM.match(line) if in_autosummary else None
        if item and not stripped.startswith(":"):
            out.append((module, item.group(2)))
    return out


def check_api_reference(text=None):
    """Raise :class:`APIReferenceError` naming listed-but-missing and public-but-unlisted names."""
    import importlib

    entries = api_entries(text)
    missing, documented = [], set()
    for module, name in entries:
        obj = getattr(importlib.import_module(module), name, None)
        if obj is None:
            missing.append(f"{module}.{name}")
        else:
            documented.add(id(obj))
    undocumented = []
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", ()):
            if id(getattr(mod, name)) not in documented:
                undocumented.append(f"{module}.{name}")
    problems = []
    if missing:
        problems.append("doc/api.rst lists names that do not exist: " + ", ".join(missing))
    if undocumented:
        problems.append("public names missing from doc/api.rst: "
                        + ", ".join(sorted(set(undocumented))))
    if problems:
        raise APIReferenceError("; ".join(problems))
    return entries


def _filter_api(app, docname, source):
    if docname == "index" and not HAS_GALLERY:
        source[0] = source[0].replace("   auto_examples/index\n", "")
        logger.info("[overparam_sklearn doc] examples/ has no GALLERY_HEADER.rst or README.txt; "
                    "the gallery is left out")


_CLASS_STUB = """{name}
{underline}

.. currentmodule:: {module}

.. autoclass:: {name}
   :members:
   :inherited-members:
   :special-members: __call__

.. minigallery:: {module}.{name}
   :add-heading: Examples using ``{name}``
   :heading-level: -
"""

_FUNCTION_STUB = """{name}
{underline}

.. currentmodule:: {module}

.. autofunction:: {name}

.. minigallery:: {module}.{name}
   :add-heading: Examples using ``{name}``
   :heading-level: -
"""

_DATA_STUB = """{name}
{underline}

.. currentmodule:: {module}

.. autodata:: {name}
   :no-value:
"""


def _write_api_stubs(app):
    """Check api.rst against the code, then write gen_modules/<module>.<name>.rst per entry."""
    import importlib
    import inspect

    entries = check_api_reference()
    out_dir = DOC / "gen_modules"
    out_dir.mkdir(exist_ok=True)
    wanted = set()
    for module, name in entries:
        obj = getattr(importlib.import_module(module), name)
        if inspect.isclass(obj):
            template = _CLASS_STUB
        elif callable(obj):
            template = _FUNCTION_STUB
        else:
            template = _DATA_STUB
        content = template.format(name=name, module=module, underline="=" * len(name))
        path = out_dir / f"{module}.{name}.rst"
        wanted.add(path.name)
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

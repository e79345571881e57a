"""Every public function, class and public method documents its parameters and returns.

numpydoc's validator: PR01 (a parameter is not documented), PR02 (a documented parameter does not
exist) and RT01 (no Returns section), over ``overparam_sklearn.__all__`` and
``overparam_sklearn.kernels.__all__``.
"""

import inspect

import pytest

import overparam_sklearn
import overparam_sklearn.kernels

validate = pytest.importorskip("numpydoc.validate").validate

CHECKED = ("PR01", "PR02", "RT01")


def _public_objects():
    for module in (overparam_sklearn, overparam_sklearn.kernels):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            path = f"{module.__name__}.{name}"
            yield path
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        yield f"{path}.{attr}"


@pytest.mark.parametrize("path", sorted(set(_public_objects())))
def test_parameters_and_returns_are_documented(path):
    errors = [f"{code}: {message}" for code, message in validate(path)["errors"]
              if code in CHECKED]
    assert not errors, "\n".join(errors)

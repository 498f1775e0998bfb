"""The Examples in the docstrings of ``EDPSNLib.fusion`` (and the fuse job builder) run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import EDPSNLib.fusion

MODULES = [f"EDPSNLib.fusion.{m.name}" for m in pkgutil.iter_modules(EDPSNLib.fusion.__path__)] + [
    "EDPSNLib.jobs.fuse"
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed"


def test_public_functions_have_args_and_returns() -> None:
    import inspect

    missing = []
    for name in MODULES[:-1]:
        module = importlib.import_module(name)
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fname.startswith("_") or fn.__module__ != name or fname == "main":
                continue
            doc = inspect.getdoc(fn) or ""
            if "Returns:" not in doc:
                missing.append(f"{name}.{fname}")
    assert not missing, f"no Args/Returns sections: {missing}"

"""The error types for bad input (a store's data, a catalog file), and the reading of configuration files
whose errors name the file and each bad field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class DataError(ValueError):
    """Bad input data. ``str(err)`` reads ``store '<store>': variable '<var>': <problem>``.

    ``store`` is a display name that never contains credentials (see ``StoreRef.display``).
    """

    def __init__(self, store: str, problem: str, variable: str | None = None):
        self.store = store
        self.variable = variable
        self.problem = problem
        where = f"store '{store}'" + (f": variable '{variable}'" if variable else "")
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple:
        """Pickled with its parts, so that it crosses process boundaries (Dask workers) unchanged."""
        return type(self), (self.store, self.problem, self.variable)


class CatalogError(ValueError):
    """A catalog file that cannot be read or is inconsistent; names the file and the problem."""


def describe_validation_error(what: str, err: Exception) -> str:
    """``what`` followed by one line per invalid field (dotted path: message) of a pydantic error."""
    errors = getattr(err, "errors", None)
    if not callable(errors):
        return f"{what}: {err}"
    lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
             for e in errors(include_url=False, include_input=False)]
    return f"{what}:\n" + "\n".join(lines)


def read_yaml_mapping(path: Path, what: str, error: type[ValueError] = ValueError) -> dict:
    """The top-level mapping of a YAML file; ``error`` naming ``what`` and the file when it cannot be read,
    is not YAML or is not a mapping."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise error(f"{what} {path}: cannot be read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise error(f"{what} {path}: not valid YAML ({err})") from None
    if not isinstance(doc, dict):
        raise error(f"{what} {path}: expected a mapping at the top level, got {type(doc).__name__}")
    return doc


def validated(model: type[M], doc: object, what: str) -> M:
    """``model.model_validate(doc)``; a ValueError naming ``what`` and each bad field otherwise."""
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        raise ValueError(describe_validation_error(what, err)) from None

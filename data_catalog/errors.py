"""One error type for bad input: it names the store, the variable and the problem."""

from __future__ import annotations


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


def describe_validation_error(what: str, err: Exception) -> str:
    """``what`` followed by one line per invalid field (dotted path: message) of a pydantic error."""
    errors = getattr(err, "errors", None)
    if not callable(errors):
        return f"{what}: {err}"
    lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
             for e in errors(include_url=False, include_input=False)]
    return f"{what}:\n" + "\n".join(lines)

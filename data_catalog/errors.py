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

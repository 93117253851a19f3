"""loginetl: login events from SQS into PostgreSQL, with the PII pseudonymized."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``loginetl.__version__``, read from the installed metadata on first use.

    pyproject.toml is the one place the number lives. Reading it costs ~20-40 ms
    (importlib.metadata scans the path), which ``--help`` and most commands need not pay.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("loginetl")
    except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found

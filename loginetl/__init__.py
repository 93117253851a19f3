"""loginetl: login events from SQS into PostgreSQL, with the PII pseudonymized."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The installed distribution's metadata: pyproject.toml is the one place the number lives.
    __version__ = version("loginetl")
except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
    __version__ = "0+unknown"

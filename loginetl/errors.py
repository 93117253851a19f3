"""The one exception hierarchy; the CLI turns these into a sentence and an exit code.

Messages say what went wrong and what to do next. They never carry a plaintext ip or
device_id, a secret, or a database password.
"""

from __future__ import annotations


class LoginetlError(Exception):
    """Base of every error loginetl raises on purpose."""

    exit_code = 1


class ConfigError(LoginetlError):
    """A setting is missing or unsafe; fixed by changing configuration."""

    exit_code = 2


class KeyMaterialError(ConfigError):
    """A key file is missing, unreadable, malformed or too widely readable."""


class ServiceUnavailable(LoginetlError):
    """PostgreSQL or the SQS endpoint cannot be reached (after retries)."""

    exit_code = 2


class QueueNotFound(LoginetlError):
    """The queue does not exist and we were not asked to create it."""

    exit_code = 2


class SchemaNotAtHead(LoginetlError):
    """The database schema is older (or newer) than this version of loginetl expects."""

    exit_code = 2


class MigrationRunning(LoginetlError):
    """Another ``loginetl migrate`` holds this database's migrate lock; running both at once
    could interleave one migration's steps."""


class MigrationRefused(LoginetlError):
    """A migrate command would take the schema where loginetl cannot: below the 1.0
    baseline, or from a pre-release revision it does not adopt."""


class UnsupportedBySqs(LoginetlError):
    """The SQS endpoint does not implement an API we were asked to use."""

    exit_code = 2


class Refused(LoginetlError):
    """A safety check refused to act; the message names the flag that overrides it."""

    exit_code = 3


class AliasConflict(LoginetlError):
    """token_aliases already maps old tokens elsewhere than their values say: a forgery."""

    exit_code = 3

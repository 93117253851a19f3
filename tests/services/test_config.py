"""Settings: flag > environment > default, and unsafe values refused with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from loginetl.config import DEFAULT_DATABASE_URL, Settings
from loginetl.errors import ConfigError


def test_defaults() -> None:
    s = Settings.load(environ={})
    assert s.database_url == DEFAULT_DATABASE_URL
    assert (s.queue_name, s.dlq_name, s.region) == ("login-queue", "login-queue-dlq", "us-east-1")
    assert s.endpoint_url is None


def test_flag_beats_environment_beats_default(tmp_path: Path) -> None:
    env = {
        "LOGINETL_QUEUE": "from-env",
        "LOGINETL_DLQ": "dlq-env",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "LOGINETL_KEYS_DIR": str(tmp_path),
    }
    s = Settings.load(environ=env, queue_name="from-flag")
    assert s.queue_name == "from-flag"
    assert s.dlq_name == "dlq-env"
    assert s.region == "eu-west-1"
    assert s.keys_dir == tmp_path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"database_url": "mysql://root@localhost/x"}, "PostgreSQL"),
        ({"database_url": "not a url"}, "not a database URL"),
        ({"database_url": "postgresql://u@h:5432"}, "names no database"),
        ({"queue_name": "bad name!"}, "not a valid SQS queue name"),
        ({"queue_name": "same", "dlq_name": "same"}, "different"),
        ({"endpoint_url": "127.0.0.1:4566"}, "http"),
    ],
)
def test_unsafe_values_fail_fast(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(environ={}, **overrides)  # type: ignore[arg-type]


def test_safe_url_hides_the_password() -> None:
    s = Settings.load(environ={"LOGINETL_DATABASE_URL": "postgresql://app:s3cret@db:5432/x"})
    assert "s3cret" not in s.safe_database_url
    assert "***" in s.safe_database_url


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_bare_postgresql_url_uses_the_shipped_driver(scheme: str) -> None:
    s = Settings.load(environ={"LOGINETL_DATABASE_URL": f"{scheme}://u:p%40ss@h:5432/db"})
    assert s.database_url == "postgresql+psycopg2://u:p%40ss@h:5432/db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cret-pw@db.example:5432/loginetl",
        "postgresql://app@db.example:5432/loginetl?password=s3cret-pw&sslmode=require",
    ],
)
def test_repr_and_str_never_show_the_database_password(url: str) -> None:
    settings = Settings.load(environ={}, database_url=url)
    assert settings.database_url.count("s3cret-pw") == 1  # still there for connecting
    for shown in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert "s3cret-pw" not in shown
        assert "db.example:5432/loginetl" in shown
        assert "login-queue" in shown
    assert "s3cret-pw" not in settings.safe_database_url

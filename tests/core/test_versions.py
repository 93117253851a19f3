"""app_version encoding: examples from the contract, and order/injectivity as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loginetl.core.versions import decode_app_version, encode_app_version


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("2.3.0", 2_003_000),
        ("0.96", 96_000),
        ("2.00", 2_000_000),
        ("3", 3_000_000),
        ("999.999.999", 999_999_999),
        ("0", 0),
    ],
)
def test_examples(raw: str, encoded: int) -> None:
    assert encode_app_version(raw) == encoded


@pytest.mark.parametrize("raw", ["", "1.", ".1", "1..2", "a.b", "1.2.3.4", "1000", "-1", " 1"])
def test_non_versions_are_none(raw: str) -> None:
    assert encode_app_version(raw) is None


_part = st.integers(min_value=0, max_value=999)
_version = st.lists(_part, min_size=1, max_size=3)


@given(_version, _version)
def test_integer_order_is_version_order(a: list[int], b: list[int]) -> None:
    ea = encode_app_version(".".join(map(str, a)))
    eb = encode_app_version(".".join(map(str, b)))
    assert ea is not None
    assert eb is not None
    pad = lambda v: tuple(v + [0] * (3 - len(v)))  # noqa: E731 - "2" means "2.0.0"
    assert (ea < eb) == (pad(a) < pad(b))
    assert (ea == eb) == (pad(a) == pad(b))


@given(_version)
def test_decode_round_trips(parts: list[int]) -> None:
    encoded = encode_app_version(".".join(map(str, parts)))
    assert encoded is not None
    assert encode_app_version(decode_app_version(encoded)) == encoded

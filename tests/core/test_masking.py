"""Keyed, canonical, per-field tokens."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loginetl.core.masking import Masker, token_key_id
from loginetl.core.messages import _canonical_ip_by_parser, canonical_ip

KEY = bytes(range(32))


def test_two_spellings_of_one_ipv6_address_give_one_token() -> None:
    masker = Masker("k1", KEY)
    spelled = [canonical_ip("2001:DB8:0:0:0:0:0:1"), canonical_ip("2001:db8::1")]
    assert spelled[0] == spelled[1] == "2001:db8::1"
    assert masker.token("ip", spelled[0] or "") == masker.token("ip", spelled[1] or "")


def test_ipv4_mapped_ipv6_folds_to_ipv4() -> None:
    assert canonical_ip("::ffff:1.2.3.4") == "1.2.3.4"


def test_token_shape_carries_key_id() -> None:
    token = Masker("k7", KEY).token("device_id", "593-47-5928")
    assert token.startswith("k7:")
    assert token_key_id(token) == "k7"
    assert len(token) == 3 + 64


def test_token_depends_on_key_and_field() -> None:
    value = "10.0.0.1"
    k1 = Masker("k1", KEY)
    other_key = Masker("k1", bytes(32))
    assert k1.token("ip", value) == k1.token("ip", value)
    assert k1.token("ip", value) != other_key.token("ip", value)
    assert k1.token("ip", value) != k1.token("device_id", value)


def test_token_is_not_an_unkeyed_hash() -> None:
    import hashlib

    value = "199.172.111.135"
    token = Masker("k1", KEY).token("ip", value)
    assert hashlib.sha256(value.encode()).hexdigest() not in token


@pytest.mark.parametrize(("key_id", "key"), [("x1", KEY), ("k1", b"short")])
def test_weak_or_odd_keys_are_refused(key_id: str, key: bytes) -> None:
    with pytest.raises(ValueError, match="key"):
        Masker(key_id, key)


@pytest.mark.parametrize("token", ["", "k1:", "k1:" + "g" * 64, "1:" + "a" * 64, "k1:" + "A" * 64])
def test_malformed_tokens_have_no_key_id(token: str) -> None:
    assert token_key_id(token) is None


@given(st.ip_addresses())
def test_canonical_ip_is_idempotent_and_spelling_free(address: ipaddress._BaseAddress) -> None:
    canonical = canonical_ip(str(address))
    assert canonical is not None
    assert canonical_ip(canonical) == canonical
    if isinstance(address, ipaddress.IPv6Address):
        assert canonical_ip(address.exploded.upper()) == canonical


def test_tokens_stay_what_earlier_releases_wrote() -> None:
    """Tokens are join keys in stored data: a faster HMAC call must give the same bytes."""
    expected = hmac.new(KEY, b"loginetl/v1/ip\x00199.172.111.135", hashlib.sha256).hexdigest()
    assert Masker("k1", KEY).token("ip", "199.172.111.135") == f"k1:{expected}"


_octet = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["00", "01", "001", "255", "256", "0x1", "٣", " 1", "1 ", "+1", "-1", ""]),
)


@given(st.lists(_octet, min_size=3, max_size=5), st.sampled_from(["", "\n", " ", "."]))
def test_the_ipv4_fast_path_agrees_with_the_full_parser(octets: list[str], tail: str) -> None:
    value = ".".join(octets) + tail
    assert canonical_ip(value) == _canonical_ip_by_parser(value)

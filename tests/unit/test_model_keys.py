"""The fleet's model API keys: rotation past a refused key, and keys only ever named by fingerprint."""

from __future__ import annotations

import re

import pytest

from runner.model.keys import KeyRing, MemoryRefusals, fingerprint, split_keys

# Fake keys, built at run time so nothing in the tree looks like a credential.
FIRST = "sk-ant-" + "api03-first-not-a-real-key-QQQQ"
SECOND = "sk-ant-" + "api03-second-not-a-real-key-WWWW"
THIRD = "sk-ant-" + "api03-third-not-a-real-key-ZZZZ"


@pytest.mark.parametrize(("value", "keys"), [
    (None, []),
    ("", []),
    (" , ,", []),
    ("only", ["only"]),
    (" a , b,,c ", ["a", "b", "c"]),
    ("b,a,b, a", ["b", "a"]),  # repeats dropped, the configured order kept
])
def test_split_keys_reads_a_comma_separated_setting(value: str | None, keys: list[str]) -> None:
    assert split_keys(value) == keys


def test_a_fingerprint_is_short_stable_distinct_and_reveals_nothing() -> None:
    name = fingerprint(FIRST)
    assert re.fullmatch(r"key-[0-9a-f]{12}", name)
    assert fingerprint(FIRST) == name
    assert len({fingerprint(FIRST), fingerprint(SECOND), fingerprint(THIRD)}) == 3
    for part in (FIRST, "sk-ant", "first", "QQQQ"):
        assert part not in name


def test_the_ring_uses_the_first_key_until_the_api_refuses_it() -> None:
    ring = KeyRing([FIRST, SECOND, THIRD])
    assert ring.current() == FIRST
    assert ring.refuse(FIRST, "401 invalid x-api-key") is True
    assert ring.current() == SECOND
    assert ring.usable() == [SECOND, THIRD]


def test_a_refusal_is_new_only_the_first_time_so_it_is_logged_once() -> None:
    ring = KeyRing([FIRST, SECOND])
    assert ring.refuse(SECOND, "403") is True
    assert ring.refuse(SECOND, "403 again") is False
    assert ring.usable() == [FIRST]


def test_with_every_key_refused_there_is_no_current_key() -> None:
    ring = KeyRing([FIRST, SECOND])
    ring.refuse(FIRST, "401")
    ring.refuse(SECOND, "401")
    assert ring.current() is None and ring.usable() == []
    assert KeyRing([]).current() is None


def test_rings_sharing_refusals_all_move_past_a_refused_key() -> None:
    shared = MemoryRefusals()
    one, other = KeyRing([FIRST, SECOND], shared), KeyRing([FIRST, SECOND], shared)
    one.refuse(FIRST, "401")
    assert other.current() == SECOND  # every client moves to the next key at its next call


def test_a_cleared_refusal_puts_the_key_back_in_its_place() -> None:
    refusals = MemoryRefusals()
    ring = KeyRing([FIRST, SECOND], refusals)
    ring.refuse(FIRST, "401")
    refusals.clear(fingerprint(FIRST))
    assert ring.current() == FIRST
    refusals.clear(fingerprint(THIRD))  # clearing a key never refused is no error
    assert ring.refuse(FIRST, "401") is True  # and a new refusal counts as new


def test_refusals_are_recorded_by_fingerprint_never_by_key() -> None:
    refusals = MemoryRefusals()
    KeyRing([FIRST, SECOND], refusals).refuse(FIRST, "401 invalid x-api-key")
    assert refusals.refused() == {fingerprint(FIRST)}
    assert FIRST not in repr(refusals.__dict__)


def test_the_refused_set_is_a_copy() -> None:
    refusals = MemoryRefusals()
    refusals.refuse(fingerprint(FIRST), "401")
    refusals.refused().clear()
    assert refusals.refused() == {fingerprint(FIRST)}


def test_fingerprints_name_the_configured_keys_in_order() -> None:
    ring = KeyRing([FIRST, SECOND])  # their fingerprints sort the other way round
    assert ring.fingerprints() == [fingerprint(FIRST), fingerprint(SECOND)]
    assert not any(key in " ".join(ring.fingerprints()) for key in (FIRST, SECOND))


def test_the_ring_keeps_its_own_copy_of_the_keys() -> None:
    keys = [FIRST, SECOND]
    ring = KeyRing(keys)
    keys.clear()
    assert ring.current() == FIRST

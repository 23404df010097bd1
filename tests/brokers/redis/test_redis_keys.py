"""Redis key names: distinct (topic, group, partition) never share a key, and a topic's keys share one hash tag."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.brokers.redis.keys import Keys
from choreograph.core.errors import ConfigurationError
from choreograph.core.names import MAX_LENGTH, check_group, check_topic

_ALLOWED = string.ascii_letters + string.digits + "._-"
# Valid names, biased towards the characters that build keys (".", "-", "_", short names, shared prefixes).
names = st.text(alphabet=_ALLOWED, min_size=1, max_size=12).filter(lambda s: s[0] != "." and s[-1] != ".")
long_names = st.text(alphabet=_ALLOWED, min_size=1, max_size=MAX_LENGTH).filter(lambda s: s[0] != "." and s[-1] != ".")
_TAG = re.compile(r"\{([^}]*)\}")


def all_keys(keys: Keys, topic: str, group: str, partitions: int = 3) -> dict[str, tuple[object, ...]]:
    """Every key the broker derives for (topic, group), mapped to what it is the key of."""
    check_topic(topic), check_group(group)
    out: dict[str, tuple[object, ...]] = {keys.groups(topic): ("groups", topic)}
    g = keys.group(topic, group)
    for name in ("members", "leases", "generation", "inbox"):
        out[getattr(g, name)] = (name, topic, group)
    for p in range(partitions):
        out[keys.stream(topic, p)] = ("stream", topic, p)
        out[keys.stream_meta(topic, p)] = ("meta", topic, p)
        out[g.retries(p)] = ("retries", topic, group, p)
        out[g.attempts(p)] = ("attempts", topic, group, p)
        out[g.resubmitted(p)] = ("resubmitted", topic, group, p)
    return out


def _assert_injective(pairs: list[tuple[str, str]]) -> None:
    keys = Keys("chor")
    owner: dict[str, tuple[object, ...]] = {
        keys.topics: ("topics",),
        keys.dead_letter_index: ("dead letter index",),
        keys.dead_letter("0190c0de-0000-7000-8000-000000000000"): ("dead letter",),
    }
    for topic, group in pairs:
        for key, what in all_keys(keys, topic, group).items():
            assert owner.setdefault(key, what) == what, f"{key!r} is the key of {owner[key]} and of {what}"
            if what[0] != "topics":
                # Redis Cluster hashes the first {...}: every key of a topic is in the topic's slot
                assert _TAG.search(key).group(1) == topic  # type: ignore[union-attr]


@settings(max_examples=500)
@given(st.lists(st.tuples(names, names), min_size=2, max_size=6, unique=True))
def test_distinct_topic_group_pairs_never_share_a_key(pairs: list[tuple[str, str]]) -> None:
    _assert_injective(pairs)


@settings(max_examples=100)
@given(st.lists(st.tuples(long_names, long_names), min_size=2, max_size=3, unique=True))
def test_long_names_never_share_a_key_either(pairs: list[tuple[str, str]]) -> None:
    _assert_injective(pairs)


def test_pairs_that_differ_only_in_where_a_separator_falls_stay_apart() -> None:
    _assert_injective([("a", "b-members"), ("a-b", "members"), ("a.g", "b"), ("a", "g.b"), ("a_p0", "x"), ("a", "p0")])


@pytest.mark.parametrize("name", ["a}b", "a{b", "a:b", "a}:g:b", "{dead-letters}"])
def test_the_characters_that_could_forge_a_key_or_a_hash_tag_are_refused(name: str) -> None:
    # Braces would move the hash tag and ":" would forge the key's own separators; the naming rule has neither.
    with pytest.raises(ConfigurationError):
        check_topic(name)
    with pytest.raises(ConfigurationError):
        check_group(name)

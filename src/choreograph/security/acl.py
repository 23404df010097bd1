"""Export an access policy as broker-native configuration, so the broker refuses what the policy forbids.

The runtime enforces the policy on consume (a verified signer publishing a
type it may not is dead-lettered ``unauthorized``); the broker, configured
from these exports, refuses the publish itself. One user per service:

- **NATS** (:func:`nats_authorization`): an ``authorization { users: [...] }``
  block for ``nats-server.conf``; each user may publish only to the subjects
  of its topics (``<prefix>.<topic>.>``), and of the JetStream API only what
  a service's broker calls: create and update the streams of its topics (any
  stream's info: configuration and counts); the consumer API, direct and
  message reads and acks of the streams it consumes; the same on the KV buckets a service uses (inbox,
  leases, dead letters, and the key-value namespaces of
  :data:`SERVICE_NAMESPACES`). Stream purge and delete are denied everywhere.
- **Redis** (:func:`redis_acl`): ``ACL SETUSER`` rules (Redis 7: selectors):
  read-write on the partition streams of the topics it publishes, read and
  consumer-group commands only on those it consumes, its groups' state keys,
  the topic directory and the dead-letter store; nothing else.
- **Kafka** (:func:`kafka_acls`): ``kafka-acls.sh`` command lines: ``Write`` on
  published topics, ``Read`` on consumed topics and on the service's groups
  (``<service>.*``, prefixed), ``Describe`` on both.

Passwords are never part of the policy: the NATS block reads them from
variables (``$<SERVICE>_PASSWORD``), and Redis rules leave them to be added
(``>password`` or ``#sha256``) unless given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from choreograph.core.names import subject_token
from choreograph.security.policy import AccessPolicy

_GROUP_READS = ("+xreadgroup", "+xack", "+xclaim", "+xautoclaim", "+xgroup", "+xpending", "+xinfo", "+xrange",
                "+xrevrange", "+xlen", "+eval", "+evalsha")  # fmt: skip
"""What a consumer may do on the streams it only reads. EVAL/EVALSHA: the broker's scripts name the stream as a
key; each command inside a script is checked again, so a script cannot XADD there either."""


_CONNECTION_COMMANDS = ("+info", "+client|setname", "+client|getname", "+client|id",
                        "+script|load", "+script|exists")  # fmt: skip
"""What the client needs of the commands ``-@admin -@dangerous`` take away (never CLIENT KILL, SCRIPT FLUSH)."""


@dataclass(frozen=True, slots=True)
class TopicRights:
    """One service's rights, expanded to concrete topics."""

    service: str
    publish: tuple[str, ...]
    consume: tuple[str, ...]


def topic_rights(policy: AccessPolicy, event_topics: Mapping[str, str]) -> list[TopicRights]:
    """Expand ``policy`` over the app's events (event type -> topic) into topics per service.

    A consume entry that is an exact topic name counts even if no known event
    is published on it.
    """
    topics = set(event_topics.values())
    out = []
    for service in sorted(policy.services):
        rights = policy.services[service]
        publish = {topic for etype, topic in event_topics.items() if policy.may_publish(service, etype)}
        consume = {t for t in topics if policy.may_consume(service, t)}
        consume |= {t for t in rights.consume if not t.endswith("*")}
        out.append(TopicRights(service, tuple(sorted(publish)), tuple(sorted(consume))))
    return out


def _quoted(items: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def nats_authorization(
    rights: Iterable[TopicRights],
    *,
    all_topics: Iterable[str] = (),
    prefix: str = "choreo",
    passwords: Mapping[str, str] | None = None,
    namespaces: Iterable[str] | None = None,
) -> str:
    """Return an ``authorization`` block for nats-server (see the module and :func:`nats_users`)."""
    users = nats_users(
        rights,
        all_topics=all_topics,
        prefix=prefix,
        passwords=passwords,
        namespaces=SERVICE_NAMESPACES if namespaces is None else namespaces,
    )
    return "authorization {\n  users: [\n" + "\n".join(users) + "\n  ]\n}\n"


SERVICE_NAMESPACES: Final = ("schemas", "parking", "data_keys")
"""Key-value namespaces a service's process uses: the schema registry, parked-record markers, the data keys
(encryption's ``KvKeyStore``). Operators' namespaces (dead-letter marks, audit, replay, flows) are not given."""


def _js_read(stream: str) -> list[str]:
    """Reading a stream as a consumer: its consumer API (create, info, next, delete), acks, direct and message gets."""
    api = "$JS.API"
    return [f"{api}.CONSUMER.*.{stream}", f"{api}.CONSUMER.*.{stream}.>", f"{api}.CONSUMER.*.*.{stream}.>",
            f"$JS.ACK.{stream}.>", f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>",
            f"{api}.STREAM.MSG.GET.{stream}"]  # fmt: skip


def _js_own(stream: str) -> list[str]:
    """Creating a stream if missing and turning on its batch settings (its info is open to all: see nats_users)."""
    return [f"$JS.API.STREAM.CREATE.{stream}", f"$JS.API.STREAM.UPDATE.{stream}"]


def nats_users(
    rights: Iterable[TopicRights],
    *,
    all_topics: Iterable[str] = (),
    prefix: str = "choreo",
    passwords: Mapping[str, str] | None = None,
    namespaces: Iterable[str] = SERVICE_NAMESPACES,
) -> list[str]:
    """Return the user entries of :func:`nats_authorization`, one per service, to merge into an existing block.

    ``namespaces``: the key-value namespaces every service may use (bucket
    ``<prefix>_kv_<name>``). ``all_topics`` is no longer needed (each user's
    rights are an allow list); it is accepted for callers that pass it.
    """
    del all_topics
    buckets = [f"{prefix}_{name}" for name in ("inbox", "leases", "dlq", "meta")]  # meta: the deployment marker
    buckets += [f"{prefix}_kv_{name}" for name in namespaces]
    users = []
    for r in rights:
        publish = [f"{prefix}.{subject_token(t)}.>" for t in r.publish]
        # Account limits (asked on connect) and any stream's info (configuration and counts, never messages): a
        # publish to a topic outside the rights then fails at the publish itself, refused and logged by the server.
        publish += ["$JS.API.INFO", "$JS.API.STREAM.INFO.*"]
        streams = {t: f"{prefix.upper()}_{subject_token(t)}" for t in sorted({*r.publish, *r.consume})}
        for topic, stream in streams.items():
            publish += _js_own(stream)
            if topic in r.consume:
                publish += _js_read(stream)
        for bucket in buckets:  # shared bookkeeping: keys are per group, the buckets are not
            publish += [f"$KV.{bucket}.>", *_js_own(f"KV_{bucket}"), *_js_read(f"KV_{bucket}")]
        publish += ["$JS.FC.>", "_INBOX.>"]  # flow control of KV watchers; replies
        deny = ["$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.DELETE.>"]
        if passwords and r.service in passwords:
            password = f'"{passwords[r.service]}"'
        else:  # nats-server reads $NAME from its environment
            password = "$" + r.service.upper().replace("-", "_") + "_PASSWORD"
        users.append(
            "    {\n"
            f'      user: "{r.service}"\n'
            f"      password: {password}\n"
            "      permissions: {\n"
            f"        publish: {{ allow: {_quoted(publish)}, deny: {_quoted(deny)} }}\n"
            f"        subscribe: {{ allow: {_quoted(['_INBOX.>'])} }}\n"
            "      }\n"
            "    }"
        )
    return users


def redis_acl(
    rights: Iterable[TopicRights], *, prefix: str = "chor", passwords: Mapping[str, str] | None = None
) -> list[list[str]]:
    """Return one ``ACL SETUSER`` argument list per service (see the module)."""
    commands = []
    for r in rights:
        rules = [r.service, "reset", "on"]
        if passwords and r.service in passwords:
            rules.append(f">{passwords[r.service]}")
        rules += ["+@all", "-@admin", "-@dangerous", *_CONNECTION_COMMANDS, "resetchannels"]
        rules += [f"~{prefix}:topics", f"~{prefix}:{{dead-letters}}:*", f"~{prefix}:{{meta}}:epoch"]  # the marker
        for topic in r.publish:
            rules.append(f"~{prefix}:{{{topic}}}:p*")
        for topic in r.consume:
            rules += [f"~{prefix}:{{{topic}}}:g:*", f"~{prefix}:{{{topic}}}:groups"]
            if topic not in r.publish:
                rules.append(f"%R~{prefix}:{{{topic}}}:p*")
        read_only = [f"~{prefix}:{{{t}}}:p*" for t in r.consume if t not in r.publish]
        if read_only:
            # Reading as a group writes the stream's group state, never its entries: only these commands may, with
            # every key of the user (a command's keys must all match one selector; the settle script names many).
            keys = [rule for rule in rules if rule.startswith("~")] + read_only
            rules.append("(" + " ".join([*keys, "-@all", *_GROUP_READS]) + ")")
        commands.append(rules)
    return commands


def redis_acl_text(commands: Iterable[list[str]]) -> str:
    """Render :func:`redis_acl`'s output as ``ACL SETUSER`` lines for redis-cli."""
    lines = ["# Generated by `choreograph export acl --format redis`; add >password (or #sha256) per user."]
    lines += ["ACL SETUSER " + " ".join(args) for args in commands]
    return "\n".join(lines) + "\n"


def kafka_acls(rights: Iterable[TopicRights], *, bootstrap: str = "localhost:9092") -> str:
    """Return ``kafka-acls.sh`` command lines granting each service (``User:<service>``) its rights."""
    lines = ["# Generated by `choreograph export acl --format kafka`; run with an admin client config."]
    base = f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal User:{{service}}"
    for r in rights:
        head = base.format(service=r.service)
        for topic in r.publish:
            lines.append(f"{head} --operation Write --operation Describe --topic {topic}")
        for topic in r.consume:
            lines.append(f"{head} --operation Read --operation Describe --topic {topic}")
        if r.consume:
            lines.append(f"{head} --operation Read --group {r.service}. --resource-pattern-type prefixed")
    return "\n".join(lines) + "\n"

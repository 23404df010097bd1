"""The one object the runtime calls: seal what is published, open what is consumed.

Publish side, for a batch of envelopes about to be encoded:
``seal`` = (for handler outputs) key the derived ids, then encrypt, then sign.
Consume side, for each decoded envelope before anything else looks at it:
``open`` = verify the signature and the signer's rights, then decrypt. An
event that fails is never handled: ``open`` raises a
:class:`~choreograph.security.errors.SecurityError` whose ``reason``
(``signature``, ``unauthorized``, ``decrypt``) the consumer dead-letters it
with; the dead letter keeps the record's bytes as they came (still
encrypted).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError, ConfigurationError
from choreograph.security.canonical import SIGNATURE, SIGNATURE_KEY, SIGNATURE_PROOF, rebuilt
from choreograph.security.encryption import ENCRYPTED_DATA, ENCRYPTION_KEY, Encryption
from choreograph.security.errors import SecurityError, SignatureError, UnauthorizedError
from choreograph.security.keyring import KeyRing
from choreograph.security.policy import AccessPolicy
from choreograph.security.signing import Verifier, keyed_id, sign

logger = logging.getLogger("choreograph.security")

SEAL_EXTENSIONS: Final = frozenset({SIGNATURE, SIGNATURE_KEY, SIGNATURE_PROOF, ENCRYPTED_DATA, ENCRYPTION_KEY})
"""The extensions sealing adds: an edited copy drops them before it is sealed again."""

KEYED_REMEMBERED: Final = 65_536
"""How many output ids keyed by :meth:`Security.output_ids` a Security remembers, so sealing does not key them twice."""


def is_sealed(envelope: Envelope) -> tuple[bool, bool]:
    """Whether ``envelope`` is (signed, encrypted)."""
    extensions = envelope.extensions
    return extensions.get(SIGNATURE) is not None, extensions.get(ENCRYPTED_DATA) is not None


def unsealed(envelope: Envelope) -> Envelope:
    """``envelope`` without its signature and ciphertext attributes, as if never sealed.

    For a copy whose ``data`` was changed (an edited dead letter): a stale
    ``encdata`` would otherwise bring the old values back on decryption, and
    a stale signature cannot verify. ``data`` is left as it is: decrypt first.
    """
    extensions = envelope.extensions
    if not SEAL_EXTENSIONS.intersection(extensions):
        return envelope
    return rebuilt(envelope, {k: v for k, v in extensions.items() if k not in SEAL_EXTENSIONS})


@dataclass
class Security:
    """Security settings of an app: ``App(security=Security(...))``.

    - ``keys``: signing is on when given: every event this app publishes is
      signed with the key of its source, and every consumed event must verify
      (unless its source is in ``accept_unsigned`` and it carries no
      signature at all; a signature that is present must always verify);
    - ``require_signatures``: False accepts unsigned events from anyone (a
      migration setting: signed ones are still checked);
    - ``policy``: who may publish which types and consume which topics;
    - ``encryption``: which payloads are encrypted, with which key store;
    - ``max_age``: seconds; a consumed event whose ``time`` is older than that
      (or more than ``max_age`` ahead, or missing) is refused (reason
      ``signature``) — a replay guard beyond the inbox window. It also
      refuses legitimate old events: a consumer lagging more than
      ``max_age``, delayed retries and ``dlq retry`` after it, the replay
      tool. None (default): no freshness check. ``clock`` gives the time
      (seconds since the epoch) it is judged against.
    """

    keys: KeyRing | None = None
    require_signatures: bool = True
    accept_unsigned: frozenset[str] = frozenset()
    policy: AccessPolicy | None = None
    encryption: Encryption | None = None
    max_age: float | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    _verifier: Verifier | None = field(default=None, init=False, repr=False)
    _keyed: OrderedDict[str, None] = field(default_factory=OrderedDict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.accept_unsigned = frozenset(self.accept_unsigned)
        if self.max_age is not None and not (math.isfinite(self.max_age) and self.max_age > 0):
            raise ConfigurationError(f"max_age must be a positive number of seconds, not {self.max_age!r}")
        if self.keys is not None:
            self._verifier = Verifier(self.keys)
        elif self.policy is not None:
            logger.warning("a publish policy without signing keys is enforced by the broker only (export acl)")

    @property
    def signing(self) -> bool:
        """Whether events are signed and verified."""
        return self.keys is not None

    def check_service(self, service: str, topics: Iterable[str]) -> None:
        """Refuse (ConfigurationError) a service that cannot sign or may not consume one of ``topics``."""
        if self.keys is not None and self.keys.signing_key(service) is None:
            raise ConfigurationError(
                f"signing is on but service {service!r} has no signing key; "
                f"create one with: choreograph keys generate {service}"
            )
        if self.policy is not None:
            for topic in topics:
                if not self.policy.may_consume(service, topic):
                    raise ConfigurationError(f"the access policy does not let service {service!r} consume {topic!r}")

    def output_ids(self, service: str) -> Callable[[str], str] | None:
        """The function that keys ``service``'s derived output ids, or None when its ids stay public.

        With signing on and a signing key for ``service``, it maps a public
        derived id to an HMAC of it under the service's secret (see
        :func:`~choreograph.security.signing.keyed_id`): the consumer gives it
        to each handler's Context, so the id ``ctx.publish`` returns is the id
        sent. Ids it made are remembered (the last :data:`KEYED_REMEMBERED`),
        so a later ``seal(derived=True)`` does not key them a second time.
        """
        keys = self.keys
        key = keys.signing_key(service) if keys is not None else None
        if key is None:
            return None
        secret, remembered = key.id_secret(), self._keyed

        def derive(public_id: str) -> str:
            event_id = keyed_id(secret, public_id)
            remembered[event_id] = None
            if len(remembered) > KEYED_REMEMBERED:
                remembered.popitem(last=False)
            return event_id

        return derive

    async def seal(self, envelopes: Sequence[Envelope], *, derived: bool = False) -> list[Envelope]:
        """Return ``envelopes`` ready to encode: ids keyed (``derived``), payloads encrypted, batch signed.

        ``derived``: the envelopes are handler outputs whose ids were derived
        from public values; with signing on they are replaced by an HMAC under
        the source's key (deterministic, so a re-run emits the same ids). Ids
        already keyed by :meth:`output_ids` are kept as they are.
        Raises ConfigurationError for a source without a signing key.
        """
        out = list(envelopes)
        keys = self.keys
        if derived and keys is not None:
            for i, envelope in enumerate(out):
                key = keys.signing_key(envelope.source)
                if key is not None and envelope.id not in self._keyed:
                    out[i] = rebuilt(envelope, envelope.extensions, event_id=keyed_id(key.id_secret(), envelope.id))
        if self.encryption is not None:
            out = [await self.encryption.encrypt(envelope) for envelope in out]
        if keys is not None:
            out = sign(keys, out)
        return out

    async def open(self, envelope: Envelope) -> Envelope:
        """Return ``envelope`` verified and decrypted; raise SecurityError if it must not be handled.

        Whatever the event holds, nothing else is raised but a BrokerError
        from the key store (transient: the consumer reads the batch again).
        """
        try:
            return await self._open(envelope)
        except (SecurityError, BrokerError):
            raise  # a BrokerError (the key store's broker unreachable) is transient: the batch is fetched again
        except Exception as exc:  # a safety net: the checks are meant to leave nothing for it
            raise SignatureError(f"event could not be checked: {type(exc).__name__}: {str(exc)[:200]}") from exc

    def _check_fresh(self, envelope: Envelope, max_age: float) -> None:
        """Raise SignatureError unless ``envelope.time`` is within ``max_age`` seconds of the clock (either side)."""
        stamp = envelope.time
        at: float | None = None
        if isinstance(stamp, str) and len(stamp) <= 64:
            try:
                moment = datetime.fromisoformat(stamp)
                at = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # no zone: read as UTC
            except (ValueError, OverflowError, OSError):
                at = None
        if at is None:
            raise SignatureError(f"event {envelope.id!r} carries no readable time; max_age needs one")
        age = self.clock() - at
        if age > max_age:
            raise SignatureError(
                f"event {envelope.id!r} is {age:.0f}s old, over max_age {max_age:g}s (a replay, or a consumer "
                "that lagged behind: see Security.max_age)"
            )
        if age < -max_age:
            raise SignatureError(f"event {envelope.id!r} is dated {-age:.0f}s in the future, over max_age {max_age:g}s")

    def verify(self, envelope: Envelope) -> None:
        """Raise SecurityError unless ``envelope``'s signature and signer's rights pass, as :meth:`open` checks them.

        For readers that use the attributes and not the payload (the flow
        observer): nothing is decrypted and the freshness window is not
        applied (an observer legitimately reads old events). Raises nothing else.
        """
        try:
            self._verify(envelope)
        except SecurityError:
            raise
        except Exception as exc:  # the same safety net as open()
            raise SignatureError(f"event could not be checked: {type(exc).__name__}: {str(exc)[:200]}") from exc

    async def _open(self, envelope: Envelope) -> Envelope:
        self._verify(envelope)
        if self.max_age is not None:
            self._check_fresh(envelope, self.max_age)
        if self.encryption is not None:
            envelope = await self.encryption.decrypt(envelope)
        return envelope

    def _verify(self, envelope: Envelope) -> None:
        verifier = self._verifier
        if verifier is not None:
            signed = envelope.extensions.get(SIGNATURE) is not None
            if signed or (self.require_signatures and envelope.source not in self.accept_unsigned):
                key = verifier.verify(envelope)
                if key.owner != envelope.source:
                    raise UnauthorizedError(
                        f"event {envelope.id!r} claims source {envelope.source!r} but is signed by {key.owner!r}"
                    )
                if self.policy is not None and not self.policy.may_publish(key.owner, envelope.type):
                    raise UnauthorizedError(f"service {key.owner!r} may not publish {envelope.type!r}")
            elif self.policy is not None and not self.policy.may_publish(envelope.source, envelope.type):
                raise UnauthorizedError(f"service {envelope.source!r} may not publish {envelope.type!r}")

"""Operator-mode (JWT) NATS test setup made with nkeys alone (no ``nsc``): operator, accounts, user creds.

A JWT here is ``base64url(header).base64url(claims).base64url(ed25519 signature by the issuer's NKey)``,
claims as nats-server's v2 JWTs carry them; the server trusts the operator and preloads the accounts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1}
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keypair(prefix: int) -> tuple[str, str, Any]:
    import nkeys  # type: ignore[import-untyped]

    seed = nkeys.encode_seed(os.urandom(32), prefix)
    pair = nkeys.from_seed(seed)
    return seed.decode(), pair.public_key.decode(), pair


def _jwt(issuer: Any, subject: str, nats: dict[str, Any]) -> str:
    claims: dict[str, Any] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": subject[:8],
        "sub": subject,
        "nats": nats,
    }
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()).decode().rstrip("=")
    signed = f"{_b64(json.dumps({'typ': 'JWT', 'alg': 'ed25519-nkey'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def _account(operator: Any, public: str, *, jetstream: bool) -> str:
    limits = {**_UNLIMITED, "leaf": -1, **(_JETSTREAM if jetstream else {})}
    body = {"limits": limits, "default_permissions": {"pub": {}, "sub": {}}, "type": "account", "version": 2}
    return _jwt(operator, public, body)


def _creds(account: Any) -> str:
    import nkeys

    seed, public, _ = _keypair(nkeys.PREFIX_BYTE_USER)
    user = _jwt(
        account, public, {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}
    )
    return (
        f"-----BEGIN NATS USER JWT-----\n{user}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )


@dataclass(frozen=True)
class OperatorSetup:
    """Server configuration lines, a user's creds file text, and a stranger's (signed by an unknown account)."""

    config: list[str]
    creds: str
    stranger_creds: str


def operator_setup() -> OperatorSetup:
    """An operator, an application account with JetStream, a system account, and users."""
    import nkeys

    _, operator_public, operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    _, app_public, app = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    _, system_public, _ = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    _, _, unknown = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)  # never given to the server
    accounts = {
        app_public: _account(operator, app_public, jetstream=True),
        system_public: _account(operator, system_public, jetstream=False),
    }
    preload = ", ".join(f'{public}: "{token}"' for public, token in accounts.items())
    config = [
        f'operator: "{_jwt(operator, operator_public, {"type": "operator", "version": 2})}"',
        "resolver: MEMORY",
        f"resolver_preload: {{ {preload} }}",
        f"system_account: {system_public}",
    ]
    return OperatorSetup(config, _creds(app), _creds(unknown))

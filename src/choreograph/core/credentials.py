"""Secrets and TLS settings of broker connections, shared by the server backends.

Secret indirection: every secret option ``X`` of a backend (``password``,
``token``, ``nkey_seed``, ``sasl_password``) can be given in three ways, at
most one at a time:

* ``X`` itself (in code, or the userinfo of a URL where the backend has one);
* ``X_file=/path``: the file's content, without one trailing newline (the form
  Kubernetes and Docker secrets mount);
* ``X_env=NAME``: the value of the environment variable ``NAME``.

So a URL never needs to carry a secret: ``nats://host:4222?password_file=/run/secrets/nats``.
Files and variables are read when the backend builds its client, so a rotated
secret is picked up by the next process (or broker) that connects.

TLS failures while connecting are explained by :func:`explain_tls_failure`:
which side refused, and which option fixes it.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Final

from choreograph.core.errors import ConfigurationError

VERIFY_MODES: Final = ("required", "optional", "none")
"""How a client checks the server's certificate: against the CA (and host name), or not at all (``none``)."""


def check_secret_options(name: str, value: object, file: object, env: object) -> None:
    """Raise ConfigurationError unless at most one of ``name``, ``name_file``, ``name_env`` is given, non-empty.

    Checks the shape only; nothing is read (see :func:`resolve_secret`).
    """
    given = []
    for option, item in ((name, value), (f"{name}_file", file), (f"{name}_env", env)):
        if item is None:
            continue
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"{option} must be a non-empty string or None")
        given.append(option)
    if len(given) > 1:
        raise ConfigurationError(f"give only one of {' / '.join(given)}")


def resolve_secret(name: str, value: str | None, file: str | None, env: str | None) -> str | None:
    """Return the secret ``name`` from its value, its file or its environment variable (None if none is given).

    Raises ConfigurationError naming the option when the file cannot be read
    or is empty, or when the variable is unset or empty; the secret itself is
    never part of a message.
    """
    check_secret_options(name, value, file, env)
    if value is not None:
        return value
    if file is not None:
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {name}_file {file!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{name}_file {file!r} is not UTF-8 text") from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise ConfigurationError(f"{name}_file {file!r} is empty")
        return text
    if env is not None:
        found = os.environ.get(env)
        if found is None:
            raise ConfigurationError(f"{name}_env names the environment variable {env!r}, which is not set")
        if not found:
            raise ConfigurationError(f"{name}_env names the environment variable {env!r}, which is empty")
        return found
    return None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The client side of a TLS connection: whom to trust, who we are, and how strictly to check.

    ``ca``: PEM file of the CA(s) that signed the server's certificate (None:
    the system's trust store). ``cert`` and ``key``: the client's certificate
    and private key, for servers that verify clients (mutual TLS); ``key`` may
    be omitted when ``cert`` holds both. ``verify``: ``required`` (the
    certificate is checked against the CA, and its names against the host),
    ``optional`` (checked against the CA, names not checked) or ``none``
    (nothing checked: encryption without authentication of the server). ``server_name``: the name
    expected in the server's certificate when it differs from the host
    connected to (an IP address, a load balancer).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: str = "required"
    server_name: str | None = None

    def __post_init__(self) -> None:
        for option in ("ca", "cert", "key", "server_name"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"tls_{option} must be a non-empty string or None")
        if self.verify not in VERIFY_MODES:
            raise ConfigurationError(f"tls_verify must be one of {', '.join(VERIFY_MODES)}, got {self.verify!r}")
        if self.key is not None and self.cert is None:
            raise ConfigurationError("tls_key needs tls_cert (the client certificate it belongs to)")

    def context(self) -> ssl.SSLContext:
        """Return a client SSLContext; ConfigurationError naming the option whose file is missing or invalid."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.verify != "required":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE if self.verify == "none" else ssl.CERT_OPTIONAL
        if self.ca is not None:
            try:
                context.load_verify_locations(cafile=self.ca)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(f"cannot load tls_ca {self.ca!r}: {_reason(exc)}") from None
        if self.cert is not None:
            try:
                context.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"cannot load the client certificate tls_cert {self.cert!r} / tls_key {self.key!r}: {_reason(exc)}"
                ) from None
        return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def explain_tls_failure(exc: BaseException | None, where: str) -> str | None:
    """Explain a TLS handshake failure with ``where`` (a redacted address), or return None if ``exc`` is not one.

    Follows ``__cause__`` and ``__context__``, since clients wrap the SSL error
    in their own. The message names the cause and the option that fixes it.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{getattr(exc, 'reason', '') or ''} {exc}".lower()
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = getattr(exc, "verify_message", None) or "certificate verify failed"
            hint = (
                "connect by a name in the server's certificate (NATS: or set tls_server_name to one)"
                if "hostname" in text or "ip address mismatch" in text
                else "set tls_ca to the CA file that signed the server's certificate"
            )
            return f"TLS handshake with {where} failed: the server's certificate is not trusted ({detail}); {hint}"
        if isinstance(exc, ssl.SSLError):
            reason = getattr(exc, "reason", None) or exc  # absent on an SSLError made by hand
            if "certificate required" in text or "peer did not return a certificate" in text:
                return (
                    f"TLS handshake with {where} failed: the server requires a client certificate "
                    "(mutual TLS); set tls_cert and tls_key"
                )
            if "unknown ca" in text or "bad certificate" in text or "certificate unknown" in text:
                return (
                    f"TLS handshake with {where} failed: the server refused our client certificate "
                    f"({reason}); use a tls_cert signed by a CA the server trusts"
                )
            if "wrong version number" in text or "record layer failure" in text or "packet length too long" in text:
                return f"TLS handshake with {where} failed: the server does not speak TLS on this port ({reason})"
            return f"TLS handshake with {where} failed: {reason}"
        exc = exc.__cause__ or exc.__context__
    return None

"""Display broker URLs, options and error texts with their credentials replaced by ``***``.

Every place that shows a broker URL or config to a person or a log (banners,
CLI output, error messages, ``repr`` of configs) goes through this module, so
a password never reaches a terminal, a log file or a process listing.

What counts as a secret:

* the userinfo of a URL: ``scheme://user:secret@host`` keeps the user name and
  hides the password; a lone ``scheme://secret@host`` (a NATS token) is hidden;
* query options whose name looks like a credential (``password=``, ``token=``,
  ``sasl_password=``, ``nkey=``, ``seed=``, ``creds=``, ``secret=``, ``api_key=``...);
* anything shaped like an NKey seed (``SU...``) or a JWT (``eyJ...``), wherever
  it appears;
* a URL fragment (it never configures a broker, but may carry a token).

The functions never raise, whatever the input: a display helper that fails
would turn a bad URL into a traceback that prints the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import quote, unquote

MASK: Final = "***"

_SECRET_NAME: Final = re.compile(
    r"pass|pwd|secret|token|seed|nkey|cred|auth|signature|private|api_?key|access_?key|session_?key|jwt|bearer",
    re.IGNORECASE,
)
# NKey seeds are base32 ("S" + kind letter + ~56 chars); JWTs are three base64url parts.
_SEED: Final = re.compile(r"S[UOANCXP][A-Z2-7]{40,}")
_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]*)?")


def is_secret_name(name: str) -> bool:
    """Tell whether an option named ``name`` holds a credential (by its name, case-insensitively)."""
    try:
        return bool(_SECRET_NAME.search(unquote(str(name))))
    except Exception:  # a display helper must not raise
        return True


def redact_url(url: str) -> str:
    """Return ``url`` with its credentials replaced by ``***``; never raises.

    The user name stays (it helps an operator tell accounts apart); passwords,
    tokens, credential options, seeds and fragments do not. Reserved characters
    should be percent-encoded in a URL; raw ``@`` in a password is handled, and
    other raw delimiters are redacted on a best-effort basis that prefers
    hiding too much to hiding too little.
    """
    try:
        return _redact_url(str(url))
    except Exception:  # never expected; hide everything rather than raise
        return MASK


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _redact_patterns(_redact_query(url) if "=" in url else url)
    userinfo, host_and_more = _split_userinfo(rest)
    head = f"{scheme}://"
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        head += f"{user}:{MASK}@" if colon and user else f"{MASK}@"
    cut = min((i for i in (host_and_more.find("?"), host_and_more.find("#")) if i >= 0), default=-1)
    if cut < 0:
        return _redact_patterns(head + host_and_more)
    location, delimiter, after = host_and_more[:cut], host_and_more[cut], host_and_more[cut + 1 :]
    if delimiter == "#":
        return _redact_patterns(f"{head}{location}#{MASK}")
    return _redact_patterns(f"{head}{location}?{_redact_query(after)}")


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """Split ``user:pass@host...`` into (userinfo or None, the rest); the userinfo ends at the right ``@``."""
    if rest.startswith("/"):  # sqlite:///path: no authority, an '@' is part of the path
        return None, rest
    delimiters = [i for i in (rest.find("?"), rest.find("#")) if i >= 0]
    end = min(delimiters) if delimiters else len(rest)
    at = rest.rfind("@", 0, end)
    if at < 0:
        last = rest.rfind("@")
        # An '@' after '?'/'#' is either inside an option value (host?client=a@b) or a
        # password with a raw '?'/'#'. Only an option has '=' before the '@'.
        if last < 0 or "=" in rest[end:last] or "&" in rest[end:last]:
            return None, rest
        at = last
    return rest[:at], rest[at + 1 :]


def _redact_query(query: str) -> str:
    query, hashmark, _ = query.partition("#")
    parts = []
    for item in re.split(r"([&;])", query):
        if item in ("&", ";"):
            parts.append(item)
            continue
        name, eq, _value = item.partition("=")
        parts.append(f"{name}={MASK}" if eq and is_secret_name(name) else item)
    return "".join(parts) + (f"#{MASK}" if hashmark else "")


def _redact_patterns(text: str) -> str:
    return _JWT.sub(MASK, _SEED.sub(MASK, text))


# In free text: the userinfo of anything URL-shaped, and credential options of query strings.
_USERINFO_IN_TEXT: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/?#@'\"<>]*)@")
_OPTION_IN_TEXT: Final = re.compile(r"([?&;][^=&;\s#'\"<>]*)=([^&;\s#'\"<>]*)")


def _userinfo_mask(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:{MASK}@" if colon and user else f"{match.group(1)}{MASK}@"


def _option_mask(match: re.Match[str]) -> str:
    return f"{match.group(1)}={MASK}" if is_secret_name(match.group(1)[1:]) else match.group(0)


def _redact_free_text(text: str) -> str:
    text = _USERINFO_IN_TEXT.sub(_userinfo_mask, text)
    return _redact_patterns(_OPTION_IN_TEXT.sub(_option_mask, text))


def url_secrets(url: str) -> list[str]:
    """Return the secrets in ``url`` (password, token, credential option values) in raw and decoded forms.

    Longest first, so that replacing them one by one never leaves a part of
    a longer secret. Never raises.
    """
    found: set[str] = set()
    try:
        text = str(url)
        _, sep, rest = text.partition("://")
        if sep:
            userinfo, more = _split_userinfo(rest)
            if userinfo is not None:
                user, colon, password = userinfo.partition(":")
                found.add(password if colon and user else userinfo)
            query = more.partition("?")[2]
        else:
            query = text
        for item in re.split(r"[&;#]", query):
            name, eq, value = item.partition("=")
            if eq and is_secret_name(name):
                found.add(value)
        found.update(_SEED.findall(text))
        found.update(_JWT.findall(text))
        for secret in list(found):
            for plain in {secret, unquote(secret), unquote(secret.replace("+", " "))}:
                # Messages quote values percent-encoded, as is, or escaped by repr().
                found.update((plain, quote(plain, safe=""), repr(plain)[1:-1]))
    except Exception:  # a display helper must not raise
        pass
    return sorted((s for s in found if s), key=len, reverse=True)


def redact_text(text: str, *urls: str) -> str:
    """Return ``text`` (an error message, a log line) with each URL and each secret of ``urls`` hidden.

    Use it on messages built by client libraries, which may quote the URL or
    the password they were given. Without ``urls`` (and in addition to them),
    the userinfo of every URL-shaped part of the text and every credential
    option of a query string in it are hidden. Never raises.
    """
    try:
        result = str(text)
        for url in urls:
            url = str(url)
            if url:
                result = result.replace(url, redact_url(url))
            for secret in url_secrets(url):
                result = result.replace(secret, MASK)
        return _redact_free_text(result)
    except Exception:  # never expected; hide everything rather than raise
        return MASK


def redact_value(name: str, value: object) -> object:
    """Return ``value`` fit for display as option ``name``: masked, a redacted URL, or unchanged."""
    try:
        if is_secret_name(name):
            return MASK if value not in (None, "") else value
        if isinstance(value, str):
            return redact_url(value) if "://" in value or "@" in value else _redact_patterns(value)
        if isinstance(value, Mapping):
            return redact_options(value)
        if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
            return type(value)(redact_value("", item) for item in value) if isinstance(value, tuple | list) else value
        return value
    except Exception:  # a display helper must not raise
        return MASK


def redact_options(options: Mapping[str, object]) -> dict[str, object]:
    """Return a copy of a config mapping with credential options masked and URLs redacted, recursively."""
    try:
        return {str(name): redact_value(str(name), value) for name, value in options.items()}
    except Exception:  # a display helper must not raise
        return {}

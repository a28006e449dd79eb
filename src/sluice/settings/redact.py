"""Credentials out of everything Sluice prints: URLs in settings, logs, errors, health.

Operators put credentials into URL settings (``https://user:pw@chat.example.com``,
``redis://:pw@host``, ``...?api_key=``), and every one of those settings ends up in a log
line, the health document or an error message somewhere.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
# Query parameters that carry credentials (api_key, access_token, sig, X-Amz-Signature, ...).
_SECRET_PARAM = re.compile(
    r"token|secret|key|pass(?:word|wd)?|pwd|auth|credential|signature|^sig$|session",
    re.IGNORECASE,
)
# A URL inside free text: a scheme, then everything up to whitespace or a quote / bracket.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def redact_url(url: str) -> str:
    """``url`` safe to log or print: credentials replaced by ``***``.

    Masked: the password of the
    userinfo (a userinfo without a password is masked whole, as it is usually a token), and
    the values of query or fragment parameters named like credentials (``token``, ``key``,
    ``api_key``, ``access_token``, ``secret``, ``password``, ``auth``, ``signature``...).
    Host, port and path stay, so the line still says where Sluice connects.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
        has_userinfo = "@" in parts.netloc
    except ValueError:
        return MASK  # unparseable: we cannot tell where a password would be
    query, secret_query = _mask_params(parts.query)
    fragment, secret_fragment = _mask_params(parts.fragment)
    if not has_userinfo and not secret_query and not secret_fragment:
        return url
    netloc = parts.netloc
    if has_userinfo:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if password is not None:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostinfo}"
        else:
            netloc = f"{MASK}@{hostinfo}"
    # Built by hand: urlunsplit drops the empty authority of unix:///path URLs.
    redacted = f"{parts.scheme}://{netloc}{parts.path}"
    redacted += f"?{query}" if query else ""
    return redacted + (f"#{fragment}" if fragment else "")


def redact_urls_in(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`.

    For free text that may quote a URL setting: exception messages of HTTP and Redis
    libraries, and log lines of libraries that print the URL they request (httpx logs
    ``HTTP Request: POST https://user:pw@host/...`` at INFO).
    """
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _mask_params(encoded: str) -> tuple[str, bool]:
    """``encoded`` (a query or fragment) with credential-like parameter values masked, and
    whether there was one; unchanged (byte for byte) when there was none."""
    if "=" not in encoded:
        return encoded, False
    pairs = parse_qsl(encoded, keep_blank_values=True)
    if not any(_SECRET_PARAM.search(key) for key, _ in pairs):
        return encoded, False
    masked = [(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs]
    return urlencode(masked, safe="*"), True

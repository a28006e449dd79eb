"""``sluice validate``: whether signing works between this Chatwoot and Sluice.

Chatwoot signs account-webhook deliveries from 4.11.2 (PR #13573) and agent-bot and API-inbox
deliveries from 4.13 (PR #13892); see :mod:`sluice.chatwoot.features`. Sluice with
CHATWOOT_WEBHOOK_SECRET set refuses an unsigned delivery with 401, so a secret on a Chatwoot
that does not sign the receiver's deliveries stops every message, and a secret that is not
the receiver's own does too. Without a secret anyone who can reach the intake can write as a
customer. Secrets are compared in constant time and never printed.
"""

from __future__ import annotations

import hmac

from sluice.chatwoot.checks_receivers import WHERE_SECRET, Receiver, ReceiverKind
from sluice.chatwoot.features import (
    ACCOUNT_WEBHOOKS_SIGNED,
    AGENT_BOTS_SIGNED,
    Version,
    format_version,
    signs,
)
from sluice.settings.check import Check


def _signing_kind(kind: ReceiverKind) -> str:
    # API inboxes are signed with agent bots (PR #13892).
    return "account_webhook" if kind == "account_webhook" else "agent_bot"


def signing_check(
    secret: str | None, version: Version | None, receivers: list[Receiver] | None
) -> Check:
    """Whether signing works: CHATWOOT_WEBHOOK_SECRET against the version (account webhooks
    are signed from 4.11.2, agent bots and API inboxes from 4.13; an unsigned delivery to a
    Sluice with a secret is refused with 401) and against the receivers' own secrets when
    their JSON shows them. ``receivers`` None: not determinable with this token."""
    name = "chatwoot signing"
    shown = format_version(version) if version is not None else None
    if not secret:
        if version is not None and version < ACCOUNT_WEBHOOKS_SIGNED:
            return Check(
                name, "pass", f"CHATWOOT_WEBHOOK_SECRET unset; Chatwoot {shown} signs nothing"
            )
        if (
            version is not None
            and receivers
            and not any(signs(version, _signing_kind(r.kind)) for r in receivers)
        ):
            return Check(
                name,
                "pass",
                f"CHATWOOT_WEBHOOK_SECRET unset; Chatwoot {shown} does not sign "
                + ", ".join(r.label for r in receivers),
            )
        where = (
            f" (the secret of {receivers[0].label}: {WHERE_SECRET[receivers[0].kind]})"
            if receivers
            else ""
        )
        return Check(
            name,
            "warn",
            "CHATWOOT_WEBHOOK_SECRET is not set: Sluice accepts unsigned deliveries, so anyone "
            f"who can reach /webhooks/chatwoot can write as a customer; set it{where}",
        )
    if version is None:
        return Check(
            name,
            "warn",
            "CHATWOOT_WEBHOOK_SECRET is set but Chatwoot's version is unknown: Chatwoot signs "
            "account webhooks only from 4.11.2 and agent bots from 4.13; on an older Chatwoot "
            "Sluice refuses every delivery with 401 (then unset the secret)",
        )
    if receivers:
        unsigned = [r for r in receivers if not signs(version, _signing_kind(r.kind))]
        if unsigned:
            return Check(
                name,
                "fail",
                f"Chatwoot {shown} does not sign the deliveries of "
                + ", ".join(r.label for r in unsigned)
                + " (account webhooks are signed from 4.11.2, agent bots from 4.13): with "
                "CHATWOOT_WEBHOOK_SECRET set Sluice refuses every one with 401; unset it or "
                "upgrade Chatwoot",
            )
    elif version < ACCOUNT_WEBHOOKS_SIGNED:
        return Check(
            name,
            "fail",
            f"Chatwoot {shown} signs no delivery (account webhooks from 4.11.2, agent bots "
            "from 4.13): with CHATWOOT_WEBHOOK_SECRET set Sluice refuses every one with 401; "
            "unset it or upgrade Chatwoot",
        )
    elif version < AGENT_BOTS_SIGNED:
        return Check(
            name,
            "warn",
            f"Chatwoot {shown} signs account webhooks but not agent bots (from 4.13): "
            "deliveries of an agent bot would all be refused with 401",
        )
    known = [r for r in receivers or [] if r.secret]
    matched = [r for r in known if hmac.compare_digest(r.secret or "", secret)]
    other = [r for r in known if r not in matched]
    if other and not matched:
        return Check(
            name,
            "fail",
            "CHATWOOT_WEBHOOK_SECRET is not the secret of "
            + ", ".join(r.label for r in other)
            + ": Sluice refuses every delivery with 401; copy it from "
            + WHERE_SECRET[other[0].kind]
            + " (sluice chatwoot setup prints it)",
        )
    if other:
        return Check(
            name,
            "warn",
            f"CHATWOOT_WEBHOOK_SECRET is the secret of {matched[0].label} but not of "
            + ", ".join(r.label for r in other)
            + ": the deliveries of the latter are refused with 401",
        )
    if matched:
        return Check(
            name,
            "pass",
            f"CHATWOOT_WEBHOOK_SECRET is the secret of {matched[0].label}; Chatwoot {shown} "
            "signs its deliveries",
        )
    return Check(
        name,
        "pass",
        f"CHATWOOT_WEBHOOK_SECRET set; Chatwoot {shown} signs "
        + (
            "account webhooks and agent bots"
            if version >= AGENT_BOTS_SIGNED
            else "account webhooks"
        )
        + " (the receiver's secret itself is not visible to this token)",
    )

"""Which channels this process sends to: the log always; webhook, Slack and Alertmanager
when set."""

from __future__ import annotations

from sluice.alerts.channels.alertmanager import AlertmanagerChannel
from sluice.alerts.channels.base import Channel
from sluice.alerts.channels.log import LogChannel
from sluice.alerts.channels.slack import SlackChannel
from sluice.alerts.channels.webhook import WebhookChannel
from sluice.alerts.config import AlertSettings

__all__ = ["channels_from_settings"]


def channels_from_settings(settings: AlertSettings) -> list[Channel]:
    """The log channel, plus the webhook, Slack and Alertmanager channels that are
    configured (one Alertmanager channel per URL: every member of a cluster is told)."""
    channels: list[Channel] = [LogChannel()]
    if settings.webhook_url:
        channels.append(WebhookChannel(settings.webhook_url, timeout_s=settings.channel_timeout_s))
    slack = settings.slack_url()
    if slack:
        channels.append(SlackChannel(slack, timeout_s=settings.channel_timeout_s))
    for url in settings.alertmanager_urls():
        channels.append(
            AlertmanagerChannel(
                url,
                timeout_s=settings.channel_timeout_s,
                resend_s=settings.alertmanager_resend_s,
                evaluation_interval_s=settings.evaluation_interval_s,
                generator_url=settings.generator_url,
            )
        )
    return channels

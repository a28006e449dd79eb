"""Alert channels (log, Alertmanager-style webhook, Slack, Alertmanager's own API) and the
dispatcher feeding them.

One module per kind of receiver (:mod:`.log`, :mod:`.webhook`, :mod:`.slack`,
:mod:`.alertmanager`), the HTTP
they share (:mod:`.http`, :mod:`.masking`), which ones are configured (:mod:`.configured`)
and the dispatcher that makes sure a slow receiver never slows Sluice (:mod:`.dispatcher`).

Webhook URLs are credentials (a Slack incoming webhook's path *is* its token; other
receivers take ``user:password@``): they are never logged in full, including by httpx's
own request log, which a filter masks.
"""

from __future__ import annotations

from sluice.alerts.channels.alertmanager import AlertmanagerChannel, postable_alert
from sluice.alerts.channels.base import Channel, ChannelError, ResendingChannel
from sluice.alerts.channels.configured import channels_from_settings
from sluice.alerts.channels.dispatcher import ChannelStats, Dispatcher
from sluice.alerts.channels.log import LogChannel
from sluice.alerts.channels.slack import SlackChannel, slack_text
from sluice.alerts.channels.webhook import WebhookChannel, alertmanager_payload

__all__ = [
    "AlertmanagerChannel",
    "Channel",
    "ChannelError",
    "ChannelStats",
    "Dispatcher",
    "LogChannel",
    "ResendingChannel",
    "SlackChannel",
    "WebhookChannel",
    "alertmanager_payload",
    "channels_from_settings",
    "postable_alert",
    "slack_text",
]

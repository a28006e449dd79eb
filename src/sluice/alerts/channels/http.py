"""The part of the webhook and Slack channels that is plain HTTP: a POST with bounded
timeouts whose errors name only the masked URL (see :mod:`.masking`)."""

from __future__ import annotations

from typing import Any

import httpx

from sluice.alerts.channels.base import ChannelError
from sluice.alerts.channels.masking import register_secret
from sluice.alerts.config import mask_url

__all__ = ["HttpChannel"]


class HttpChannel:
    """POSTs JSON to a URL with bounded timeouts; errors carry only the masked URL."""

    name = "http"

    def __init__(self, url: str, *, timeout_s: float, hide_path: bool) -> None:
        self._url = url
        self.target = mask_url(url, hide_path=hide_path)
        self._timeout = httpx.Timeout(timeout_s)
        register_secret(url, self.target, hide_path=hide_path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    async def _request(
        self, method: str, json_body: Any | None, url: str | None = None
    ) -> httpx.Response:
        """``url`` defaults to the channel's; another one must share its credentials, as
        only the channel's URL was registered for masking."""
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                return await client.request(method, url or self._url, json=json_body)
        except httpx.TimeoutException:
            raise ChannelError(f"{self.name} {self.target}: timed out") from None
        except httpx.HTTPError as exc:
            raise ChannelError(f"{self.name} {self.target}: {type(exc).__name__}") from None

    async def _post(self, body: Any) -> None:
        response = await self._request("POST", body)
        if not response.is_success:
            raise ChannelError(f"{self.name} {self.target}: HTTP {response.status_code}")

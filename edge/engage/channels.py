"""Notification channels behind one interface.

A campaign writes one outbox row per (notice, channel) with status `queued`; `deliver` hands each
queued row to its channel after the generating transaction (a channel may do I/O) and records the
outcome: `delivered` (the inbox), `sent`, `failed` with the error, or `not_configured` — an SMS or
WeChat adapter without its configuration never pretends to send.

The SMS and WeChat adapters post one JSON request to the configured gateway (the chain's relay to
Aliyun SMS / the WeChat template-message API, which hold the provider's signing); the body names the
template, the member id and the notice's fields — never a phone number or name, which the relay looks
up itself from the member id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

from edge.engage.policy import EngagePolicy, SmsConfig, WechatConfig

if TYPE_CHECKING:
    import httpx
else:
    from edge.lazy_import import httpx  # imported on first use (docs/performance.md)


class Outgoing(msgspec.Struct, frozen=True):
    """One outbox row as a channel sees it."""

    notification_id: str
    member_id: str
    campaign: str
    payload: dict[str, str]


class Delivery(msgspec.Struct, frozen=True):
    status: str  # delivered, sent, failed, not_configured
    error: str = ""


class Channel(Protocol):
    name: str

    def deliver(self, note: Outgoing) -> Delivery: ...


class InboxChannel:
    """The member's inbox: the outbox row itself is the message; delivering it makes it visible."""

    name = "inbox"

    def deliver(self, note: Outgoing) -> Delivery:
        return Delivery("delivered")


def _post(url: str, body: dict[str, object], timeout: float) -> Delivery:
    try:
        resp = httpx.post(url, json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        return Delivery("failed", f"gateway unreachable: {type(exc).__name__}")
    if 200 <= resp.status_code < 300:
        return Delivery("sent")
    return Delivery("failed", f"gateway answered {resp.status_code}")


class SmsChannel:
    name = "sms"

    def __init__(self, config: SmsConfig, timeout: float = 5.0) -> None:
        self.config = config
        self.timeout = timeout

    def deliver(self, note: Outgoing) -> Delivery:
        c = self.config
        if not c.configured():
            return Delivery("not_configured", "SMS is not configured (sms.gateway_url, sign_name, template_id, "
                                              "access_key_id, access_key_secret)")
        return _post(c.gateway_url, {"access_key_id": c.access_key_id, "access_key_secret": c.access_key_secret,
                                     "sign_name": c.sign_name, "template_id": c.template_id,
                                     "member_id": note.member_id, "campaign": note.campaign,
                                     "params": note.payload, "id": note.notification_id}, self.timeout)


class WechatChannel:
    name = "wechat"

    def __init__(self, config: WechatConfig, timeout: float = 5.0) -> None:
        self.config = config
        self.timeout = timeout

    def deliver(self, note: Outgoing) -> Delivery:
        c = self.config
        if not c.configured():
            return Delivery("not_configured", "WeChat template messages are not configured (wechat.app_id, "
                                              "app_secret, template_id, gateway_url)")
        return _post(c.gateway_url, {"app_id": c.app_id, "app_secret": c.app_secret, "template_id": c.template_id,
                                     "member_id": note.member_id, "campaign": note.campaign,
                                     "data": note.payload, "id": note.notification_id}, self.timeout)


def channels_for(policy: EngagePolicy) -> dict[str, Channel]:
    return {"inbox": InboxChannel(), "sms": SmsChannel(policy.sms), "wechat": WechatChannel(policy.wechat)}

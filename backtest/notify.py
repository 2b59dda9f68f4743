"""Notifications of alerts: e-mail (SMTP, :mod:`smtplib`) and a webhook (e.g. a WeCom robot).

``[notify]`` in ``mine.toml`` (:class:`NotifyConfig`) names the channels and where they go.
Secrets are read only from environment variables named in the config (``smtp_password_env``,
``webhook_url_env``: a WeCom robot URL carries its key, so the whole URL is a secret); they
are never logged, stored or put in an error message.

Delivery (:func:`send_pending`): every alert is queued per channel in ``alerts_log``
(:mod:`factors.alerts`) in the transaction that stores it; each channel then gets one digest
message of all its pending alerts. A failed send is retried (``tenacity``: ``max_retries``
retries, waits from ``retry_wait`` s, doubled, capped at 30 s), logged (``logging`` warning)
and, if it still fails, recorded on the rows (``notify_attempts``, ``notify_error``) and left
pending: the next ``mine alerts --send`` or ``mine monitor`` run delivers it. Nothing is lost
on a crash either: the queue is the table.

Webhook body (WeCom robot "text" message): ``{"msgtype": "text", "text": {"content": ...}}``,
POSTed as JSON; any HTTP status other than 2xx, or a JSON reply with a non-zero ``errcode``,
is a failure.
"""
from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import ClassVar

import tenacity

from data.errors import AlphamineError

__all__ = ["CHANNELS", "NotifyConfig", "NotifyError", "format_digest", "send_email",
           "send_webhook", "deliver", "send_pending"]

log = logging.getLogger(__name__)

#: Notification channels.
CHANNELS = ("email", "webhook")
#: WeCom robot text messages are limited to 2048 bytes; digests are cut below that.
MAX_WEBHOOK_BYTES = 2000


class NotifyError(AlphamineError):
    """A notification could not be delivered (after the retries) or is misconfigured."""


@dataclass(frozen=True)
class NotifyConfig:
    """``[notify]``: where alerts are sent (module docstring). ``channels`` empty = none."""

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {"smtp_port": (1, 65535), "timeout": (0, 600, True),
                              "max_retries": (0, 20), "retry_wait": (0, 60)}

    channels: tuple = ()
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_tls: str = "none"
    smtp_user: str = ""
    smtp_password_env: str = "ALPHAMINE_SMTP_PASSWORD"
    email_from: str = "alphamine@localhost"
    email_to: tuple = ()
    webhook_url_env: str = "ALPHAMINE_WEBHOOK_URL"
    timeout: float = 10.0
    max_retries: int = 3
    retry_wait: float = 1.0

    def __post_init__(self) -> None:
        bad = [c for c in self.channels if c not in CHANNELS]
        if bad:
            raise ValueError(f"channels: unknown channel(s) {', '.join(map(str, bad))}; use "
                             f"{', '.join(CHANNELS)}")
        if self.smtp_tls not in ("none", "starttls", "ssl"):
            raise ValueError(f"smtp_tls must be none, starttls or ssl, got {self.smtp_tls!r}")
        if "email" in self.channels and not self.email_to:
            raise ValueError("email_to is empty but channels has email")


def format_digest(alerts, limit_bytes: int | None = None) -> tuple[str, str]:
    """Subject and body of one message listing ``alerts``.

    Parameters
    ----------
    alerts : list of AlertRecord or mapping
        Objects with ``date, ts_code, rule, severity, message`` (attributes or keys).
    limit_bytes : int, optional
        Cut the body (UTF-8) below this size, ending with ``... and N more``.

    Returns
    -------
    (str, str)
    """
    def get(a, k):
        return a[k] if isinstance(a, dict) else getattr(a, k)
    n = len(alerts)
    subject = f"alphamine: {n} stable-layer alert{'s' if n != 1 else ''}"
    lines = [f"[{get(a, 'severity')}] {get(a, 'date')} {get(a, 'ts_code')} "
             f"{get(a, 'rule')}: {get(a, 'message')}" for a in alerts]
    body = [subject, ""]
    for i, line in enumerate(lines):
        if limit_bytes is not None:
            rest = f"... and {n - i} more"
            size = len("\n".join([*body, line, rest]).encode())
            if size > limit_bytes:
                body.append(rest)
                break
        body.append(line)
    return subject, "\n".join(body)


def _secret(name: str, what: str, required: bool) -> str:
    v = os.environ.get(name, "") if name else ""
    if required and not v:
        raise NotifyError(f"{what}: environment variable {name or '(unnamed)'} is not set "
                          f"([notify] {what}_env)")
    return v


def send_email(cfg: NotifyConfig, subject: str, body: str) -> None:
    """Send one plain-text e-mail to ``cfg.email_to`` through ``cfg.smtp_host``.

    Logs in when ``smtp_user`` is set (password from ``$<smtp_password_env>``).

    Raises
    ------
    NotifyError
        Connection, TLS, login or refusal (one attempt; :func:`deliver` retries).
    """
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, cfg.email_from, ", ".join(cfg.email_to)
    msg.set_content(body)
    try:
        cls = smtplib.SMTP_SSL if cfg.smtp_tls == "ssl" else smtplib.SMTP
        with cls(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout) as s:
            if cfg.smtp_tls == "starttls":
                s.starttls()
            if cfg.smtp_user:
                s.login(cfg.smtp_user, _secret(cfg.smtp_password_env, "smtp_password", True))
            s.send_message(msg)
    except (smtplib.SMTPException, OSError) as e:
        raise NotifyError(f"smtp {cfg.smtp_host}:{cfg.smtp_port}: "
                          f"{type(e).__name__}: {e}") from None


def send_webhook(cfg: NotifyConfig, content: str) -> None:
    """POST a WeCom-style text message to ``$<webhook_url_env>``.

    Raises
    ------
    NotifyError
        Variable unset, connection error, HTTP status not 2xx, or a non-zero ``errcode``. The
        message never contains the URL (it holds the robot's key).
    """
    url = _secret(cfg.webhook_url_env, "webhook_url", True)
    data = json.dumps({"msgtype": "text", "text": {"content": content}},
                      ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout) as r:
            reply = r.read()
    except urllib.error.HTTPError as e:
        raise NotifyError(f"webhook: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, socket.timeout) as e:
        reason = getattr(e, "reason", e)
        raise NotifyError(f"webhook: {type(reason).__name__}: "
                          f"{str(reason).replace(url, '<url>')}") from None
    try:
        j = json.loads(reply or b"{}")
    except ValueError:
        return                                      # a non-JSON 2xx reply counts as delivered
    if isinstance(j, dict) and j.get("errcode", 0) not in (0, None):
        raise NotifyError(f"webhook: errcode {j.get('errcode')}: {j.get('errmsg', '')}")


def deliver(cfg: NotifyConfig, channel: str, subject: str, body: str) -> None:
    """Send on ``channel`` with retries (module docstring).

    Raises
    ------
    NotifyError
        The last attempt's error, after ``cfg.max_retries`` retries.
    """
    def once():
        if channel == "email":
            send_email(cfg, subject, body)
        elif channel == "webhook":
            send_webhook(cfg, body)
        else:
            raise NotifyError(f"unknown channel {channel!r}")

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("notify %s: %s; retry %d/%d", channel, state.outcome.exception(),
                    state.attempt_number, cfg.max_retries)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(cfg.max_retries + 1),
        wait=tenacity.wait_exponential(multiplier=cfg.retry_wait, min=cfg.retry_wait, max=30),
        retry=tenacity.retry_if_exception_type(NotifyError), before_sleep=before_sleep,
        reraise=True)
    retrying(once)


def send_pending(alert_log, cfg: NotifyConfig, channels=None) -> dict:
    """Deliver every pending notification of ``alert_log``, one digest per channel.

    Parameters
    ----------
    alert_log : factors.alerts.AlertLog
    cfg : NotifyConfig
    channels : iterable of str, optional
        Channels to try (default ``cfg.channels``; rows pending on a channel no longer
        configured stay pending).

    Returns
    -------
    dict
        Channel -> ``{"sent": n, "failed": n, "error": str | None}``. Never raises for a
        failed send: the failure is logged and recorded on the rows, which stay pending.
    """
    out = {}
    for ch in (channels if channels is not None else cfg.channels):
        rows = alert_log.pending(ch)
        if not rows:
            continue
        subject, body = format_digest(rows, MAX_WEBHOOK_BYTES if ch == "webhook" else None)
        ids = [r.id for r in rows]
        try:
            deliver(cfg, ch, subject, body)
        except NotifyError as e:
            log.warning("notify %s failed for %d alert(s), kept pending: %s", ch, len(ids), e)
            alert_log.mark_failed(ids, ch, str(e))
            out[ch] = {"sent": 0, "failed": len(ids), "error": str(e)}
            continue
        alert_log.mark_sent(ids, ch)
        out[ch] = {"sent": len(ids), "failed": 0, "error": None}
    return out

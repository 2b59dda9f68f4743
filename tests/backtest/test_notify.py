"""Notifications (backtest.notify) reach a local SMTP server and a local HTTP receiver on
127.0.0.1; failed sends are retried, logged, kept pending in alerts_log and delivered later;
secrets stay out of errors and the store."""
from __future__ import annotations

import logging
import socket

import pytest
from notify_servers import HTTPReceiver, SMTPServer

from backtest.notify import NotifyConfig, NotifyError, deliver, format_digest, send_pending
from factors.alerts import AlertLog
from factors.store import FactorStore

SECRET = "key=TOPSECRET-1234"


def alert(code="600519.SH", rule="dividend_cut", period="2023-12-31", severity="high"):
    return {"date": "2024-03-25", "ts_code": code, "rule": rule, "period": period,
            "values": {"change": -0.3}, "severity": severity,
            "message": "FY2023 cash dividend 0.07 yi yuan, -30% vs FY2022"}


def ncfg(**kw):
    base = dict(retry_wait=0.01, timeout=5.0, max_retries=2, email_from="a@test",
                email_to=("pm@test", "risk@test"), smtp_host="127.0.0.1")
    return NotifyConfig(**{**base, **kw})


@pytest.fixture
def log(tmp_path):
    with FactorStore(tmp_path / "lb.db") as store:
        yield AlertLog(store)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_email_reaches_the_smtp_server(log):
    log.add([alert(), alert("000001.SZ", "low_yield", severity="low")], ["email"])
    with SMTPServer() as srv:
        cfg = ncfg(channels=("email",), smtp_port=srv.port)
        out = send_pending(log, cfg)
    assert out == {"email": {"sent": 2, "failed": 0, "error": None}}
    (m,) = srv.messages
    assert m["to"] == ["<pm@test>", "<risk@test>"]
    assert m["message"]["Subject"] == "alphamine: 2 stable-layer alerts"
    body = m["message"].get_payload(decode=True).decode()
    assert "600519.SH dividend_cut" in body and "000001.SZ low_yield" in body
    assert log.pending("email") == []
    assert all(r.notify_sent == ["email"] and r.notified_at for r in log.entries())


def test_webhook_posts_a_wecom_text_message(log, monkeypatch):
    log.add([alert()], ["webhook"])
    with HTTPReceiver() as h:
        monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", h.url + "?" + SECRET)
        out = send_pending(log, ncfg(channels=("webhook",)))
    assert out["webhook"]["sent"] == 1
    (p,) = h.payloads()
    assert p["msgtype"] == "text" and "600519.SH dividend_cut" in p["text"]["content"]
    assert h.requests[0]["path"].endswith(SECRET)
    assert h.requests[0]["content_type"].startswith("application/json")


def test_a_500_is_retried_and_logged(log, monkeypatch, caplog):
    log.add([alert()], ["webhook"])
    with HTTPReceiver(fail=2) as h, caplog.at_level(logging.WARNING, "backtest.notify"):
        monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", h.url)
        out = send_pending(log, ncfg(channels=("webhook",), max_retries=2))
    assert out["webhook"] == {"sent": 1, "failed": 0, "error": None}
    assert len(h.requests) == 3
    assert [r.message for r in caplog.records].count(
        "notify webhook: webhook: HTTP 500; retry 1/2") == 1


def test_a_failed_send_stays_pending_and_is_delivered_later(log, monkeypatch, caplog):
    log.add([alert(), alert("000001.SZ")], ["webhook", "email"])
    with HTTPReceiver(fail=100) as h, SMTPServer() as srv:
        monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", h.url + "?" + SECRET)
        cfg = ncfg(channels=("email", "webhook"), smtp_port=srv.port, max_retries=1)
        with caplog.at_level(logging.WARNING, "backtest.notify"):
            out = send_pending(log, cfg)
        assert out["email"]["sent"] == 2
        assert out["webhook"] == {"sent": 0, "failed": 2, "error": "webhook: HTTP 500"}
        assert len(h.requests) == 2                               # 1 try + 1 retry
        assert any("kept pending" in r.message for r in caplog.records)
        rows = log.entries()
        assert all(r.notify_pending == ["webhook"] and r.notify_sent == ["email"]
                   and r.notify_attempts == 1 and r.notify_error == "webhook: webhook: HTTP 500"
                   for r in rows)
        h.fail = 0                                                 # the receiver is back
        out = send_pending(log, cfg)
    assert out == {"webhook": {"sent": 2, "failed": 0, "error": None}}
    assert all(sorted(r.notify_sent) == ["email", "webhook"] and not r.notify_pending
               for r in log.entries())
    assert len(srv.messages) == 1                                  # e-mail was not resent


def test_refused_connection_fails_without_leaking_the_url(log, monkeypatch, tmp_path):
    log.add([alert()], ["webhook", "email"])
    url = f"http://127.0.0.1:{free_port()}/send?{SECRET}"
    monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", url)
    monkeypatch.setenv("ALPHAMINE_SMTP_PASSWORD", "PASSWORD-5678")
    cfg = ncfg(channels=("webhook", "email"), smtp_port=free_port(), smtp_user="u",
               max_retries=0)
    out = send_pending(log, cfg)
    assert out["webhook"]["failed"] == 1 and out["email"]["failed"] == 1
    assert "Connection" in out["webhook"]["error"] or "refused" in out["webhook"]["error"]
    for v in out.values():
        assert SECRET not in v["error"] and "PASSWORD" not in v["error"]
    log.store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("lb.db*"))
    assert SECRET.encode() not in raw and b"PASSWORD-5678" not in raw


def test_pending_notifications_survive_a_crash(tmp_path, monkeypatch):
    """Alerts are queued in the insert's transaction: a process that dies before sending
    leaves them pending, and the next run delivers them."""
    with FactorStore(tmp_path / "lb.db") as store:
        AlertLog(store).add([alert()], ["webhook"])                # ... then the process dies
    with FactorStore(tmp_path / "lb.db") as store, HTTPReceiver() as h:
        monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", h.url)
        out = send_pending(AlertLog(store), ncfg(channels=("webhook",)))
        assert out["webhook"]["sent"] == 1 and len(h.requests) == 1
        assert AlertLog(store).pending("webhook") == []


def test_errcode_reply_and_unset_variable_are_failures(monkeypatch):
    cfg = ncfg(channels=("webhook",), max_retries=0)
    monkeypatch.delenv("ALPHAMINE_WEBHOOK_URL", raising=False)
    with pytest.raises(NotifyError, match="ALPHAMINE_WEBHOOK_URL is not set"):
        deliver(cfg, "webhook", "s", "b")
    with HTTPReceiver() as h:
        h.reply = {"errcode": 93000, "errmsg": "invalid webhook url"}
        monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", h.url)
        with pytest.raises(NotifyError, match="errcode 93000"):
            deliver(cfg, "webhook", "s", "b")


def test_digest_is_cut_for_the_webhook_limit():
    rows = [alert(f"{i:06d}.SZ") for i in range(200)]
    subject, body = format_digest(rows, 2000)
    assert len(body.encode()) <= 2000 and body.endswith("more")
    assert subject == "alphamine: 200 stable-layer alerts"


def test_config_checks():
    with pytest.raises(ValueError, match="unknown channel"):
        NotifyConfig(channels=("sms",))
    with pytest.raises(ValueError, match="email_to is empty"):
        NotifyConfig(channels=("email",))
    with pytest.raises(ValueError, match="smtp_tls"):
        NotifyConfig(smtp_tls="tls")

"""``mine monitor`` and ``mine alerts --send`` as library calls: run the rules, log, notify.

:func:`monitor` loads the warehouse, runs :func:`backtest.monitor.run_monitor`, stores the new
alerts in ``alerts_log`` with their notification channels pending (one transaction), then
delivers every pending notification (:func:`backtest.notify.send_pending`, which also sends
what an earlier run left pending). :func:`send_alerts` is the delivery step alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from backtest.monitor import MonitorResult, run_monitor
from backtest.notify import send_pending
from data.errors import ConfigError
from data.manager import DataManager
from factors.alerts import AlertLog, AlertRecord
from factors.store import FactorStore

__all__ = ["MonitorRun", "monitor", "send_alerts", "read_watchlist"]

_CODE = re.compile(r"^\d{6}\.(SH|SZ|BJ)$")


def read_watchlist(path) -> list[str]:
    """Stock codes of a watchlist file: one ``ts_code`` per line (or comma separated; ``#``
    starts a comment; a ``ts_code`` header line is skipped), e.g. ``600519.SH``.

    Raises
    ------
    ConfigError
        Missing or unreadable file, no code, or a malformed code (the message names it).
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--watchlist {str(p)!r}: cannot read: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    codes = []
    for line in text.splitlines():
        for tok in line.split("#", 1)[0].replace(";", ",").split(","):
            tok = tok.strip().upper()
            if not tok or tok == "TS_CODE":
                continue
            if not _CODE.match(tok):
                raise ConfigError(f"--watchlist {str(p)!r}: {tok!r} is not a ts_code "
                                  f"(like 600519.SH)")
            codes.append(tok)
    if not codes:
        raise ConfigError(f"--watchlist {str(p)!r} holds no ts_code")
    return list(dict.fromkeys(codes))



@dataclass
class MonitorRun:
    """What one ``mine monitor`` did: the rules' result, the rows it added to ``alerts_log``,
    how many alerts were already logged, and the delivery summary per channel."""

    result: MonitorResult
    added: list[AlertRecord]
    duplicates: int
    delivery: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "added": [a.id for a in self.added],
                "duplicates": self.duplicates, "delivery": self.delivery}


def monitor(cfg, date=None, *, start=None, codes=None, universe: str | None = None,
            notify: bool = True) -> MonitorRun:
    """Run the stable layer's rules and log (and send) the new alerts.

    Parameters
    ----------
    cfg : data.config.Config
        Uses ``[data]``, ``[store]``, ``[monitor]`` and ``[notify]``.
    date : date-like, optional
        Monitor day; default the last day of the warehouse calendar.
    start, codes, universe
        As :func:`backtest.monitor.run_monitor`.
    notify : bool
        Queue and deliver notifications on ``[notify] channels`` (False: log only).

    Returns
    -------
    MonitorRun

    Raises
    ------
    DataError, UniverseError, StoreError
        Warehouse, universe or store problems (a failed send never raises: it stays pending).
    """
    dm = DataManager.from_config(cfg)
    if date is None:
        date = dm.calendar()[-1]
    result = run_monitor(dm, cfg.monitor, date, start=start, codes=codes, universe=universe)
    channels = cfg.notify.channels if notify else ()
    with FactorStore(cfg.store.path) as store:
        log = AlertLog(store)
        added, dup = log.add(result.alerts.to_dict("records"), channels)
        delivery = send_pending(log, cfg.notify) if notify else {}
    return MonitorRun(result, added, dup, delivery)


def send_alerts(cfg) -> dict:
    """Deliver every pending notification of the store (``mine alerts --send``); the summary
    of :func:`backtest.notify.send_pending`."""
    with FactorStore(cfg.store.path) as store:
        return send_pending(AlertLog(store), cfg.notify)

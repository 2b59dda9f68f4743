"""alphamine data layer and the project's data contracts (the one place they are defined).

Contracts
---------
Long frame
    ``DataFrame`` indexed by ``(trade_date, ts_code)``, sorted and unique. ``trade_date`` is
    ``datetime64[ns]``; ``ts_code`` looks like ``600000.SH``. Used for storage, joins and ML.
Panel
    Wide ``DataFrame``: index ``trade_date`` (trading days ascending), columns ``ts_code``,
    ``float64`` values. NaN = not listed / suspended / undefined. Operators see the bare
    ``(T, N)`` ndarray with time on axis 0.
Units
    Normalised once at load (see :mod:`data.fields`): ``vol`` in shares (Tushare: lots of 100),
    ``amount`` in yuan (Tushare: thousand yuan), ``total_mv`` in yuan (Tushare: ten-thousand
    yuan), prices in yuan.
Prices
    The warehouse stores raw prices plus ``adj_factor``. In the factor language ``open high low
    close vwap`` are back-adjusted (raw x adj_factor, continuous across dividends); raw prices
    are ``raw_*`` and ``pre_close``. The simulator and price-limit logic use raw prices.
Timing
    A factor value at ``t`` uses data up to the close of ``t``. The forward return of horizon
    ``h`` runs from the (adjusted) open of ``t+1`` to the open of ``t+1+h``. Every operator and
    pipeline stage is causal: truncating future rows never changes past outputs (tested).
"""

"""The factor language's fields, as data.

Every name a formula may use as a leaf is listed in :data:`FIELDS` with its unit (after load),
how it is derived and its caveats. ``mine fields`` prints this table; the parser's whitelist of
field names and :meth:`data.manager.DataManager.panels` both read it, so a field is added here and
in the manager's derivation table only.

Fields with a :attr:`FieldSpec.dataset` need an optional warehouse dataset (Tushare
``daily_basic``, the opt-in ``moneyflow`` or the point-in-time report tables; absent from the
embedded snapshot, where
requesting them raises :class:`data.errors.FieldError`); ``docs/data.md`` documents every
dataset and field.

Units follow the data contracts in :mod:`data`: prices in yuan (back-adjusted prices in
yuan x adjustment factor), volumes in shares, money in yuan. Tushare's ``vol`` (lots of 100
shares), ``amount`` (thousand yuan) and ``total_share`` (ten-thousand shares) are converted
once at load.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Last trading day on which the warehouse has a real ``amount`` (see the warehouse README).
AMOUNT_LAST_REAL_DATE = "2023-03-17"


@dataclass(frozen=True)
class FieldSpec:
    """One field of the factor language.

    Attributes
    ----------
    name : str
        Name used in formulas (``close``, ``vwap``...).
    unit : str
        Unit of the loaded panel values.
    doc : str
        How the field is derived, with any caveat (one or two sentences).
    source : str
        Warehouse columns it is computed from (``file.column`` notation).
    dataset : str
        Optional warehouse dataset the field needs (``""``: available on every warehouse,
        including the embedded snapshot). Requesting the field without it raises
        :class:`data.errors.FieldError`.
    scale : float
        Factor from the stored Tushare unit to :attr:`unit` (dataset fields only).
    terms : tuple of (float, str)
        For a dataset field that is a signed sum of stored columns: ``(sign, column)`` pairs
        (``()``: the single column of :attr:`source`); see :attr:`parts`.
    float32 : bool
        Stored in float32 under ``[data] dtype = "float32"`` (rounded once from float64):
        only quantities (volume, value, shares) whose float32 rounding moved the mean RankIC
        of formulas on them by < 1e-6 on the whole real market (README "Full market"). Prices
        and returns stay float64: they are ratios of prices in cents with many exact ties
        (limit moves), and float32 rounding breaks those ties differently (up to ~4e-6).
    """

    name: str
    unit: str
    doc: str
    source: str
    dataset: str = ""
    scale: float = 1.0
    float32: bool = False
    terms: tuple = ()

    @property
    def column(self) -> str:
        """Stored column of a dataset field (the part after the dot of :attr:`source`)."""
        return self.source.split(".", 1)[1] if self.dataset else ""

    @property
    def parts(self) -> tuple[tuple[float, str], ...]:
        """``(sign, stored column)`` pairs whose signed sum, times :attr:`scale`, is the field
        (dataset fields only): :attr:`terms`, else ``((1.0, column),)``."""
        return tuple(self.terms) or ((1.0, self.column),)


_ADJ = ("Back-adjusted (hfq) price = raw x adj_factor; continuous across dividends and bonus "
        "shares. The factor base is arbitrary, so only ratios (returns, rank, correlation) are "
        "meaningful, never the level.")

_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("open", "yuan x adj_factor", f"Opening price. {_ADJ}",
              "daily.open, daily.adj_factor"),
    FieldSpec("high", "yuan x adj_factor", f"Daily high. {_ADJ}", "daily.high, daily.adj_factor"),
    FieldSpec("low", "yuan x adj_factor", f"Daily low. {_ADJ}", "daily.low, daily.adj_factor"),
    FieldSpec("close", "yuan x adj_factor", f"Closing price. {_ADJ}",
              "daily.close, daily.adj_factor"),
    FieldSpec("vwap", "yuan x adj_factor",
              "Volume-weighted average price = amount / volume (raw yuan per share) x adj_factor. "
              f"After {AMOUNT_LAST_REAL_DATE} the warehouse has no amount, so the proxy "
              "(open+high+low+close)/4 (raw) x adj_factor is used (median error vs the real "
              "VWAP ~0.3%); DataManager.is_proxy_vwap flags those cells.",
              "daily.amount, daily.vol, daily.open/high/low/close, daily.adj_factor"),
    FieldSpec("raw_open", "yuan", "Unadjusted opening price (2 decimals). Use for price limits, "
              "lots and costs, not for returns across ex-dates.", "daily.open"),
    FieldSpec("raw_high", "yuan", "Unadjusted daily high (2 decimals).", "daily.high"),
    FieldSpec("raw_low", "yuan", "Unadjusted daily low (2 decimals).", "daily.low"),
    FieldSpec("raw_close", "yuan", "Unadjusted closing price (2 decimals).", "daily.close"),
    FieldSpec("pre_close", "yuan",
              "Previous close after ex-right adjustment (Tushare convention): on an ex-dividend "
              "day it is the exchange's reference price, on the listing day the IPO price. The "
              "base of the daily price limits.", "daily.pre_close"),
    FieldSpec("vol", "shares", "Traded volume = Tushare vol (lots of 100 shares) x 100.",
              "daily.vol", float32=True),
    FieldSpec("amount", "yuan",
              "Traded value = Tushare amount (thousand yuan) x 1000. After "
              f"{AMOUNT_LAST_REAL_DATE} (and on the few earlier rows without amount) it is the "
              "proxy vol (shares) x (open+high+low+close)/4 (raw yuan); "
              "DataManager.is_proxy_amount flags those cells.",
              "daily.amount, daily.vol, daily.open/high/low/close", float32=True),
    FieldSpec("total_share", "shares",
              "Total share count. With daily_basic in the warehouse: daily_basic.total_share "
              "(10k shares) x 1e4. On the embedded snapshot: the ESTIMATE "
              "daily_basic_est.total_share x 1e4, the real quarterly snapshot carried forward "
              "and scaled on bonus-share ex-dates only (misses placements, buybacks, "
              "conversions between quarter ends; NaN before 2010-03-31 and for listings after "
              "2025-12-31). NaN on days without a bar.",
              "daily_basic.total_share (else daily_basic_est.total_share)"),
    FieldSpec("total_mv", "yuan",
              "Total market value. With daily_basic: daily_basic.total_mv (10k yuan) x 1e4. On "
              "the embedded snapshot: the estimate total_share (shares) x raw close (yuan), "
              "with the total_share caveats. NaN on days without a bar.",
              "daily_basic.total_mv (else daily_basic_est.total_share x daily.close)",
              float32=True),
    FieldSpec("turnover", "fraction (shares / shares)",
              "Turnover proxy = vol (shares) / total_share (shares). Uses TOTAL not free-float "
              "shares, so it is lower than the vendor's turnover_rate, especially for stocks "
              "with large locked-up holdings.",
              "daily.vol, daily_basic.total_share (else daily_basic_est.total_share)",
              float32=True),
    FieldSpec("ret", "fraction",
              "Close-to-close adjusted return close_t / close_prev - 1, where close_prev is the "
              "stock's own previous bar (across a suspension it is the return since the last "
              "bar). NaN on a stock's first bar in the warehouse (IPO day, or 2010-01-04 for "
              "older stocks).", "daily.close, daily.adj_factor"),
    FieldSpec("adj_factor", "dimensionless",
              "Cumulative backward adjustment factor (hfq = raw x adj_factor); rises on "
              "ex-dividend and bonus-share days. Arbitrary base: only ratios are meaningful.",
              "daily.adj_factor"),
    FieldSpec("industry", "integer code",
              "Industry group code (categorical, for cs_neutralize / cs_group_*): the Shenwan "
              "L1 industry the stock belongs to on the date (industry_sw.parquet, dated "
              "in_date <= d < out_date) coded 0..G-1 in the sorted order of the file's codes, G "
              "= unclassified. Without industry_sw.parquet (the embedded snapshot) it is the "
              "STATIC stock_basic.industry_ts (else industry) label, today's label on every "
              "date, with a notice. Only equality is meaningful, never the number.",
              "industry_sw.l1_code (else stock_basic.industry_ts)"),
)

_NEED = ("Needs the warehouse dataset {ds} (absent from the embedded snapshot: fill the "
         "warehouse with `mine data bootstrap`).")
_VAL = ("Daily value of Tushare daily_basic, NaN on days without a bar. " + _NEED)
_PIT = ("Point in time: visible from the first trading day AFTER the announcement (f_ann_date, "
        "else ann_date), carried forward; the latest report period known that day, in its "
        "latest (restated) version. " + _NEED)


_MF = ("Daily value of Tushare moneyflow (doc_id=170: active buy / sell orders by size, small "
       "< 50k yuan <= medium < 200k <= large < 1M <= extra-large), NaN on days without a "
       "moneyflow row or without a bar. Needs the opt-in warehouse dataset moneyflow (absent "
       "from the embedded snapshot: set [tushare] extra_datasets = [\"moneyflow\"] and run "
       "`mine data update`).")


def _ds(name, unit, doc, source, scale=1.0, terms=()) -> FieldSpec:
    ds = source.split(".", 1)[0]
    tail = {"daily_basic": _VAL, "moneyflow": _MF}.get(ds, _PIT).format(ds=ds)
    return FieldSpec(name, unit, f"{doc} {tail}", source, ds, scale, terms=tuple(terms))


_DATASET_SPECS: tuple[FieldSpec, ...] = (
    _ds("circ_mv", "yuan", "Float (circulating) market value = circ_mv (10k yuan) x 1e4.",
        "daily_basic.circ_mv", 1e4),
    _ds("turnover_rate", "fraction", "Vendor turnover rate on float shares = turnover_rate "
        "(%) / 100.", "daily_basic.turnover_rate", 0.01),
    _ds("pe_ttm", "ratio", "Price / earnings, trailing twelve months (total_mv / TTM net "
        "profit; NaN when loss-making).", "daily_basic.pe_ttm"),
    _ds("pb", "ratio", "Price / book (total_mv / net assets).", "daily_basic.pb"),
    _ds("ps_ttm", "ratio", "Price / sales, trailing twelve months.", "daily_basic.ps_ttm"),
    _ds("dv_ttm", "fraction", "Dividend yield, trailing twelve months = dv_ttm (%) / 100.",
        "daily_basic.dv_ttm", 0.01),
    _ds("net_mf_amount", "yuan", "Net active inflow = moneyflow.net_mf_amount (10k yuan) x 1e4; "
        "Tushare computes it from L2 orders, so it is not the sum of the size buckets.",
        "moneyflow.net_mf_amount", 1e4),
    _ds("mf_lg_net", "yuan", "Large + extra-large net active buying = (buy_lg_amount + "
        "buy_elg_amount - sell_lg_amount - sell_elg_amount) (10k yuan) x 1e4: orders of "
        ">= 200k yuan ('main force' money).",
        "moneyflow.buy_lg_amount, buy_elg_amount, sell_lg_amount, sell_elg_amount", 1e4,
        terms=((1.0, "buy_lg_amount"), (1.0, "buy_elg_amount"), (-1.0, "sell_lg_amount"),
               (-1.0, "sell_elg_amount"))),
    _ds("roe", "fraction", "Return on equity of the report period = roe (%) / 100 "
        "(year-to-date, not annualised).", "fina_indicator.roe", 0.01),
    _ds("roa", "fraction", "Return on assets of the report period = roa (%) / 100 "
        "(year-to-date).", "fina_indicator.roa", 0.01),
    _ds("eps", "yuan per share", "Basic earnings per share, year-to-date.",
        "fina_indicator.eps"),
    _ds("bps", "yuan per share", "Net assets (book value) per share.", "fina_indicator.bps"),
    _ds("grossprofit_margin", "fraction", "Gross margin = grossprofit_margin (%) / 100.",
        "fina_indicator.grossprofit_margin", 0.01),
    _ds("netprofit_yoy", "fraction", "Year-on-year growth of net profit attributable to "
        "shareholders = netprofit_yoy (%) / 100.", "fina_indicator.netprofit_yoy", 0.01),
    _ds("debt_to_assets", "fraction", "Liabilities / assets = debt_to_assets (%) / 100.",
        "fina_indicator.debt_to_assets", 0.01),
    _ds("revenue", "yuan", "Operating revenue, year-to-date (consolidated).",
        "income.revenue"),
    _ds("n_income", "yuan", "Net profit, year-to-date (consolidated, incl. minority "
        "interests).", "income.n_income"),
    _ds("total_assets", "yuan", "Total assets at the period end.", "balancesheet.total_assets"),
    _ds("total_liab", "yuan", "Total liabilities at the period end.", "balancesheet.total_liab"),
    _ds("n_cashflow_act", "yuan", "Net cash flow from operating activities, year-to-date.",
        "cashflow.n_cashflow_act"),
)
_SPECS = _SPECS + _DATASET_SPECS

#: name -> FieldSpec, in display order.
FIELDS: dict[str, FieldSpec] = {s.name: s for s in _SPECS}


#: Categorical fields (group codes, not quantities): loaded by the manager from the industry
#: classification (:meth:`data.manager.DataManager.industry`), not derived from daily bars.
CATEGORICAL_FIELDS: tuple[str, ...] = ("industry",)

#: Numeric fields derived from the daily bars, available on every warehouse (no optional
#: dataset needed), in display order. Every warehouse also has :data:`CATEGORICAL_FIELDS`.
BASE_FIELDS: tuple[str, ...] = tuple(s.name for s in _SPECS
                                     if not s.dataset and s.name not in CATEGORICAL_FIELDS)


def field_names() -> list[str]:
    """Names of all fields of the factor language, in display order.

    Returns
    -------
    list of str
        The keys of :data:`FIELDS` (including dataset fields that a given warehouse may lack:
        :meth:`data.manager.DataManager.available_fields` lists those it can load).
    """
    return list(FIELDS)

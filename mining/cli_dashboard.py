"""The Streamlit app of ``mine dashboard`` (a UI shell like the CLI: run by ``streamlit run``,
never imported by ``mining.cli``).

Pages: Leaderboard (filters by universe, producer and |valid ICIR|; pick a factor to see its
metrics and build its tear sheet), Backtests (runs side by side: NAV from 1 and headline
numbers), Mining runs (status, counts, rejections; a GP run's best / median fitness per
generation; an LLM run's valid %, accepted %, tokens and cost per round), Audit (every look at the test split) and, once ``mine monitor`` has logged any, Alerts (the stable layer's
``alerts_log``: counts per rule and severity, filters, notification state) and, once ``mine
reconcile`` has run, Reconciliations (one row per plan x fills file, its Markdown report on
request) and, once `mine signals` has stored any, Signals (the attack layer's
``signals`` table: a day's buy / sell / held names with their sub-scores and stop prices).
The configuration file comes from
``$ALPHAMINE_CONFIG`` (set by ``mine dashboard``). Tables: :mod:`mining.dashboard_data`.
"""
from __future__ import annotations

import os

import streamlit as st

from data.errors import AlphamineError
from mining import dashboard_data as dd
from mining.cli_app import load

st.set_page_config(page_title="alphamine", layout="wide")
cfg = load(os.environ.get("ALPHAMINE_CONFIG") or None)
st.sidebar.title("alphamine")
st.sidebar.caption(f"store {cfg.store.path}")
alerts = dd.alerts_frame(cfg)
recons = dd.reconciliations_frame(cfg)
signal_days = dd.signal_days(cfg)
page = st.sidebar.radio("page", ["Leaderboard", "Backtests", "Mining runs", "Audit"]
                        + (["Alerts"] if not alerts.empty else [])
                        + (["Reconciliations"] if not recons.empty else [])
                        + (["Signals"] if signal_days else []))

if page == "Leaderboard":
    st.header("Leaderboard")
    c1, c2, c3 = st.columns(3)
    universe = c1.selectbox("universe", ["csi300", "csi500", "csi800", "csi1000", "all"])
    sources = c2.multiselect("producer", ["library", "gp", "llm", "model", "manual"])
    min_icir = c3.slider("min |valid ICIR|", 0.0, 0.5, 0.0, 0.01)
    frame = dd.leaderboard_frame(cfg, universe, sources, min_icir)
    if frame.empty:
        st.info("no member matches: run `mine library --add` or `mine gp`")
    else:
        cols = [c for c in ("id", "name", "source", "train_rank_ic_mean", "valid_rank_ic_mean",
                            "valid_rank_icir", "n_tried", "adj_p", "adj_p_now", "test_looks",
                            "lineage", "formula") if c in frame]
        st.dataframe(frame[cols], hide_index=True, use_container_width=True)
        pick = st.selectbox("factor", [f"#{r.id} {r.name}: {r.formula}"
                                       for r in frame.itertuples()])
        row = frame.iloc[[f"#{r.id} {r.name}: {r.formula}"
                          for r in frame.itertuples()].index(pick)]
        st.json({k: row[k] for k in frame.columns if k.startswith(("train_", "valid_"))},
                expanded=False)
        if st.button("build its tear sheet (a look at valid: counted as a trial)"):
            from mining.report_factor import factor_report
            try:
                run = factor_report(cfg, row["formula"], universe, force=True)
                for fig in run.figures[:6]:
                    st.plotly_chart(fig, use_container_width=True)
                st.caption(f"full page: {run.path}")
            except AlphamineError as e:
                st.error(str(e))

elif page == "Backtests":
    st.header("Backtest runs")
    runs = dd.backtest_runs(cfg)
    if runs.empty:
        st.info("no finished backtest run: `mine backtest --targets latest`")
    else:
        st.dataframe(runs.drop(columns=["path", "mtime"]), hide_index=True,
                     use_container_width=True)
        chosen = st.multiselect("compare", list(runs.run), default=list(runs.run[:2]))
        if chosen:
            paths = [runs.set_index("run").loc[r, "path"] for r in chosen]
            st.line_chart(dd.nav_frame(paths))

elif page == "Mining runs":
    st.header("Mining runs")
    runs = dd.mining_runs(cfg)
    if runs.empty:
        st.info("no run recorded yet")
    else:
        st.dataframe(runs, hide_index=True, use_container_width=True)
        gp = list(runs[runs.source == "gp"].run_id)
        if gp:
            rid = st.selectbox("GP run", gp)
            gens = dd.generations(cfg, rid)
            if not gens.empty:
                st.line_chart(gens.set_index("generation")[["best", "median"]])
                st.dataframe(gens, hide_index=True, use_container_width=True)
        llm = list(runs[runs.source == "llm"].run_id)
        if llm:
            rid = st.selectbox("LLM run", llm)
            rounds = dd.llm_rounds(cfg, rid)
            if rounds.empty:
                st.info("this run kept no per-round counts")
            else:
                st.line_chart(rounds.set_index("round")[["valid_pct", "accepted_pct"]])
                st.dataframe(rounds, hide_index=True, use_container_width=True)

elif page == "Alerts":
    st.header("Stable-layer alerts")
    st.caption("prompts for a person, nothing is traded; acknowledge with "
               "`mine alerts --ack ID`")
    c1, c2, c3 = st.columns(3)
    rules = c1.multiselect("rule", sorted(alerts["rule"].unique()))
    sev = c2.multiselect("severity", ["high", "medium", "low"])
    open_only = c3.checkbox("not acknowledged only", value=True)
    view = alerts
    if rules:
        view = view[view["rule"].isin(rules)]
    if sev:
        view = view[view["severity"].isin(sev)]
    if open_only:
        view = view[~view["acknowledged"].astype(bool)]
    st.bar_chart(alerts.groupby(["rule", "severity"]).size().unstack(fill_value=0))
    st.dataframe(view, hide_index=True, use_container_width=True)

elif page == "Reconciliations":
    st.header("Reconciliations: broker fills vs plan vs simulator")
    st.caption("`mine reconcile`; slippage in bps, positive = worse for us")
    st.dataframe(recons, hide_index=True, use_container_width=True)
    pick = st.selectbox("report", recons["id"].tolist(), index=None)
    if pick is not None:
        path = recons.loc[recons["id"] == pick, "report"].iloc[0]
        try:
            with open(path, encoding="utf-8") as fh:
                st.markdown(fh.read())
        except OSError as e:
            st.warning(f"report {path!r} is not readable: {e}")
elif page == "Signals":
    st.header("Attack-layer signals")
    st.caption("scores 0..100 per stock (`mine signals`); a buy carries its ATR stop-loss and "
               "take-profit prices")
    c1, c2 = st.columns(2)
    day = c1.selectbox("day", signal_days)
    flags = c2.multiselect("flag", ["buy", "sell", "hold"], default=["buy", "sell"])
    sig = dd.signals_frame(cfg, day)
    held = sig["held"] == 1
    st.bar_chart(sig.groupby("flag").size())
    view = sig[sig["flag"].isin(flags) | (held & ("hold" in flags))] if flags else sig
    st.dataframe(view.drop(columns=["run_id", "created_at"]), hide_index=True,
                 use_container_width=True)

else:
    st.header("Test-split audit")
    audit = dd.audit_frame(cfg)
    if audit.empty:
        st.success("no access to the test split recorded: it is still sealed")
    else:
        st.dataframe(audit, hide_index=True, use_container_width=True)

"""The LLM mining loop: propose -> parse -> evaluate -> gate -> feed back, for R rounds.

Each round the model proposes ``n`` factors as JSON (:mod:`mining.prompting`). Every formula
text goes to :func:`factors.expr_parse.parse` and nowhere else; a parsed tree is scored by the common
evaluator on train/valid (:func:`backtest.candidates.evaluate_candidate`, oriented on train;
with an executor, e.g. ``[cluster] address``, the round's formulas as one batch of tasks) and
gated into the leaderboard (:func:`backtest.candidates.submit`, source ``llm``, provenance: run
id, template, model, round, rationale). The next round's message is a compact table of the
results (train/valid mean RankIC) and errors. The workspace ends at the valid split, so test
numbers are never computed, let alone shown to the model.

Nothing here raises on a bad reply: every failure is counted by kind (:data:`FAILURE_KINDS`)
in the run statistics.
"""
from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from backtest.candidates import Workspace, evaluate_candidate, submit
from backtest.remote_eval import error_text, evaluate_batch
from data.config import Config
from data.errors import AlphamineError, ConfigError
from factors.errors import ParseError
from factors.expr_parse import parse
from factors.store import FactorStore
from mining import prompting
from mining.llm_cache import CachedChat, LLMCache, ReplayChat, Sender
from mining.pool_gaps import pool_gaps

#: Reply-level failures, formula-level failures, then gate rejections, in display order.
REPLY_FAILURES = ("http_error", "timeout", "empty", "no_json", "bad_json")
FORMULA_FAILURES = ("parse_error", "repeat", "eval_error")
GATE_REJECTIONS = ("duplicate", "no_valid_metrics", "below_floor", "sign_flip", "haircut",
                   "correlation")
FAILURE_KINDS = REPLY_FAILURES + FORMULA_FAILURES + GATE_REJECTIONS
#: An accepted factor is *novel* when its largest |corr| with the members it was gated against
#: (valid split) is below this; otherwise it is a near-duplicate that merely passed the gate.
NOVELTY_CORR = 0.5


@dataclass(frozen=True)
class LLMRunSettings:
    """What defines a run (stored with it; a replay reuses them)."""

    template: str
    universe: str
    model: str
    rounds: int = 3
    n_per_round: int = 8
    temperature: float = 0.7
    max_tokens: int = 2048
    n_examples: int = 5

    @property
    def params(self) -> dict[str, Any]:
        """Sampling parameters (part of the cache key)."""
        return {"temperature": float(self.temperature), "max_tokens": int(self.max_tokens)}

    @classmethod
    def from_config(cls, cfg: Config, template: str, **overrides: Any) -> "LLMRunSettings":
        """Settings from ``[llm]`` (model, rounds, n_per_round, sampling) and ``[gp] universe``,
        then the non-None ``overrides``."""
        base = dict(universe=cfg.gp.universe, model=cfg.llm.model, rounds=cfg.llm.rounds,
                    n_per_round=cfg.llm.n_per_round, temperature=cfg.llm.temperature,
                    max_tokens=cfg.llm.max_tokens)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(template=template, **base)

    def validate(self) -> None:
        """ConfigError on a non-positive ``rounds``/``n_per_round`` or negative ``n_examples``."""
        for k in ("rounds", "n_per_round"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)!r}")
        if int(self.n_examples) < 0:
            raise ConfigError(f"n_examples must be >= 0, got {self.n_examples!r}")


@dataclass(frozen=True)
class LLMProgress:
    """A progress event of an LLM run: ``kind`` ``loading`` (panels being loaded) or
    ``round`` (a round finished or failed), and its one-line ``message``."""

    kind: str
    message: str


@dataclass
class Proposal:
    """One formula proposed by the model and what became of it."""

    round: int
    name: str
    formula: str                      # as written by the model (or repr of a non-string)
    status: str                       # accepted or a FAILURE_KINDS entry
    note: str = ""
    canonical: str | None = None      # the stored (possibly negated) formula
    train: float | None = None        # mean RankIC of the formula as written
    valid: float | None = None
    max_abs_corr: float | None = None
    novel: bool = False
    id: int | None = None


@dataclass
class LLMRun:
    """Run record of the LLM producer (:func:`run_loop`, :func:`mining.llm_run.run_llm`)."""

    run_id: str
    settings: LLMRunSettings
    stats: dict[str, Any]
    proposals: list[Proposal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[Proposal]:
        return [p for p in self.proposals if p.status == "accepted"]


def cutoff_warnings(cfg: Config) -> list[str]:
    """Warn when the model's knowledge cutoff is after the start of the valid split.

    Raises
    ------
    ConfigError
        If ``[llm] knowledge_cutoff`` is set but not a ``YYYY-MM-DD`` date.
    """
    cut = cfg.llm.knowledge_cutoff.strip()
    valid_start = cfg.evaluate.valid[0]
    if not cut:
        return [f"[llm] knowledge_cutoff is not set: cannot check whether the model was trained "
                f"on data after the valid split start {valid_start}"]
    try:
        c = _dt.date.fromisoformat(cut)
    except ValueError:
        raise ConfigError(f"[llm] knowledge_cutoff {cut!r} is not a YYYY-MM-DD date") from None
    if c > _dt.date.fromisoformat(valid_start):
        return [f"the model's knowledge cutoff {cut} is after the valid split start "
                f"{valid_start}: its 'discoveries' may be memory of published factors or of "
                f"the valid period itself; trust the test split (unseal it once) instead"]
    return []


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _pct(a: int, b: int) -> float | None:
    return round(100.0 * a / b, 1) if b else None


def new_stats() -> dict[str, Any]:
    """Empty run statistics."""
    return {"calls": 0, "calls_cached": 0, "calls_failed": 0, "retries": {},
            "tokens_in": 0, "tokens_out": 0, "tokens_in_paid": 0, "tokens_out_paid": 0,
            "proposed": 0, "valid_formulas": 0, "evaluated": 0, "accepted": 0, "novel": 0,
            "counts": {k: 0 for k in FAILURE_KINDS}, "parse_errors": [], "drift": 0,
            "direction_claimed": 0, "direction_right": 0, "rounds": []}


def finalize_stats(stats: dict[str, Any], price_in: float, price_out: float) -> dict[str, Any]:
    """Add the percentages and cost estimates (prices per 1M tokens) to ``stats``."""
    s = stats
    s["valid_pct"] = _pct(s["valid_formulas"], s["proposed"])
    s["accepted_pct"] = _pct(s["accepted"], s["proposed"])
    s["novelty_pct"] = _pct(s["novel"], s["accepted"])
    s["cost_est"] = round((s["tokens_in"] * price_in + s["tokens_out"] * price_out) / 1e6, 6)
    s["cost_paid"] = round((s["tokens_in_paid"] * price_in
                            + s["tokens_out_paid"] * price_out) / 1e6, 6)
    return s


def run_loop(ws: Workspace, store: FactorStore, cache: LLMCache, cfg: Config,
             settings: LLMRunSettings, *, sender: Sender | None = None,
             replay_of: str | None = None, use_cache: bool = True,
             on_progress: Callable[[LLMProgress], None] | None = None,
             executor=None) -> LLMRun:
    """Run the loop for ``settings.rounds`` rounds and return its statistics and proposals.

    The loop on an open workspace, store and cache; :func:`mining.llm_run.run_llm` opens them.

    Parameters
    ----------
    ws : Workspace
        Data up to the end of valid (built without ``include_test``).
    store : FactorStore
        The leaderboard (examples come from it; accepted factors go into it).
    cache : LLMCache
    cfg : Config
        ``[store]`` gate thresholds, ``[evaluate]`` splits, ``[llm]`` prices, prompts_dir.
    settings : LLMRunSettings
    sender : callable, optional
        ``messages -> ChatReply`` (e.g. :class:`mining.llm.OpenAIChat`); required unless
        ``replay_of`` is given.
    replay_of : str, optional
        Serve the calls recorded for that run from the cache, with no network.
    use_cache : bool, default True
        Answer identical requests from the cache (False: always ask ``sender``).
    on_progress : callable, optional
        Receives one :class:`LLMProgress` per round (the CLI prints them).
    executor : Executor, optional
        :mod:`factors.parallel` backend (e.g. the Ray cluster of ``[cluster] address``): each
        round's new formulas are scored as one batch of tasks on it
        (:func:`backtest.remote_eval.evaluate_batch`; same numbers as here). Gating and every
        leaderboard row stay in this process, in proposal order, once per proposal, even when a
        task is retried. Default: each formula evaluated here.

    Returns
    -------
    LLMRun

    Raises
    ------
    LLMError
        Unknown template, or (replay) a run without recorded calls or a cache miss.
    ConfigError
        Bad settings or knowledge cutoff.

    Proposals may reference members as ``factor("<name>")``; they are resolved in ``store``
    (:meth:`backtest.candidates.Workspace.using_store`) and the first prompt and every round's
    feedback show the pool's gaps (:mod:`mining.pool_gaps`).
    """
    settings.validate()
    with ws.using_store(store, cfg.evaluate.horizon):
        return _loop(ws, store, cache, cfg, settings, sender, replay_of, use_cache, on_progress,
                     executor)


def _loop(ws: Workspace, store: FactorStore, cache: LLMCache, cfg: Config,
          settings: LLMRunSettings, sender: Sender | None, replay_of: str | None,
          use_cache: bool, on_progress: Callable[[LLMProgress], None] | None,
          executor=None) -> LLMRun:
    def emit(msg: str) -> None:
        if on_progress is not None:
            on_progress(LLMProgress("round", msg))
    warnings = cutoff_warnings(cfg)
    template = prompting.get_template(settings.template, cfg.llm.prompts_dir)
    if sender is None and replay_of is None:
        raise ConfigError("run_loop needs a sender (an LLM client) or replay_of")
    horizon = cfg.evaluate.horizon
    examples = [r for r in store.top(None, sort="valid.rank_icir", universe=ws.universe)
                if r.horizon == horizon][:settings.n_examples]
    first = prompting.render(template, n=settings.n_per_round, universe=ws.universe,
                             horizon=horizon, examples=examples,
                             pool_gaps=pool_gaps(store, ws.universe, horizon).text())
    messages: list[dict[str, str]] = [{"role": "system", "content": prompting.SYSTEM_PROMPT},
                                      {"role": "user", "content": first}]
    run_cfg = {"llm": asdict(settings), "replay_of": replay_of,
               "evaluate": {"train": list(cfg.evaluate.train), "valid": list(cfg.evaluate.valid),
                            "horizon": horizon},
               "store": {"max_corr": cfg.store.max_corr,
                         "min_valid_rank_ic": cfg.store.min_valid_rank_ic}}
    run_id = store.start_run("llm", config=run_cfg, seed=None, universe=ws.universe,
                             data_root=str(cfg.data.root))
    cache.start_run(run_id, template=settings.template, model=settings.model,
                    universe=ws.universe, settings=asdict(settings), replay_of=replay_of)
    chat = (ReplayChat(cache, replay_of, run_id, settings.model, settings.params)
            if replay_of else CachedChat(sender, cache, run_id, settings.model, settings.params,
                                         use_cache=use_cache))
    stats = new_stats()
    seen: set[str] = set()
    result = LLMRun(run_id, settings, stats, [], warnings)
    t0 = time.perf_counter()
    status = "failed"
    cur: tuple[int, dict[str, int]] | None = None      # the open round and its counts at start
    try:
        for rnd in range(1, settings.rounds + 1):
            if cur is not None:
                _close_round(stats, *cur, cfg)
            cur = (rnd, {k: stats[k] for k in _ROUND_KEYS})
            reply = chat.complete(messages)
            store.heartbeat(run_id)             # the run is alive (factors.store_runs)
            _count_call(stats, reply)
            if reply.failure:
                stats["counts"][reply.failure] += 1
                emit(f"round {rnd}: request failed ({reply.failure}): {reply.error}")
                continue                        # same messages again next round
            try:
                items = prompting.extract_factors(reply.content)
            except prompting.ReplyError as e:
                stats["counts"][e.kind] += 1
                emit(f"round {rnd}: unusable reply ({e.kind}): {e}")
                messages += [{"role": "assistant", "content": reply.content or ""},
                             {"role": "user", "content": prompting.feedback_message(
                                 rnd, [], n=settings.n_per_round, train=cfg.evaluate.train,
                                 valid=cfg.evaluate.valid, reply_problem=f"{e.kind}: {e}")}]
                continue
            rows = []
            for p in _round(ws, store, cfg, settings, template.name, run_id, rnd,
                            items[:settings.n_per_round], stats, replay_of, seen, executor):
                result.proposals.append(p)
                rows.append({"name": p.name, "formula": p.formula, "status": p.status,
                             "train": p.train, "valid": p.valid, "note": p.note})
            acc = sum(r["status"] == "accepted" for r in rows)
            emit(f"round {rnd}: {len(rows)} proposed, "
                 f"{sum(r['status'] not in ('parse_error', 'repeat') for r in rows)} parsed, "
                 f"{acc} accepted")
            messages += [{"role": "assistant", "content": reply.content or ""},
                         {"role": "user", "content": prompting.feedback_message(
                             rnd, rows, n=settings.n_per_round, train=cfg.evaluate.train,
                             valid=cfg.evaluate.valid,
                             pool=pool_gaps(store, ws.universe, horizon).summary())}]
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if cur is not None:                     # the last round (or the interrupted one)
            _close_round(stats, *cur, cfg)
        stats["seconds"] = round(time.perf_counter() - t0, 2)
        finalize_stats(stats, cfg.llm.price_in_per_1m, cfg.llm.price_out_per_1m)
        cache.finish_run(run_id, stats, status=status)
        store.finish_run(run_id, n_tried=stats["proposed"], status=status, summary=stats)
    return result


_ROUND_KEYS = ("calls", "tokens_in", "tokens_out", "proposed", "valid_formulas", "evaluated",
               "accepted")


def _close_round(stats: dict[str, Any], rnd: int, before: dict[str, int], cfg: Config) -> None:
    """Append round ``rnd``'s counts (differences since ``before``) to ``stats["rounds"]``:
    proposed, valid %, accepted %, tokens in/out and their estimated cost."""
    d = {k: stats[k] - before[k] for k in _ROUND_KEYS}
    cost = (d["tokens_in"] * cfg.llm.price_in_per_1m
            + d["tokens_out"] * cfg.llm.price_out_per_1m) / 1e6
    stats["rounds"].append({"round": rnd, **d, "valid_pct": _pct(d["valid_formulas"], d["proposed"]),
                            "accepted_pct": _pct(d["accepted"], d["proposed"]),
                            "cost_est": round(cost, 6)})


def _count_call(stats: dict[str, Any], reply) -> None:
    stats["calls"] += 1
    stats["calls_cached"] += int(reply.cached)
    stats["calls_failed"] += int(reply.failure is not None)
    stats["drift"] += int(reply.drift)
    for k, v in reply.retries.items():
        stats["retries"][k] = stats["retries"].get(k, 0) + int(v)
    stats["tokens_in"] += reply.prompt_tokens
    stats["tokens_out"] += reply.completion_tokens
    if not reply.cached:
        stats["tokens_in_paid"] += reply.prompt_tokens
        stats["tokens_out_paid"] += reply.completion_tokens


def _round(ws: Workspace, store: FactorStore, cfg: Config, settings: LLMRunSettings,
           template: str, run_id: str, rnd: int, items: Sequence[Any], stats: dict[str, Any],
           replay_of: str | None, seen: set[str], executor) -> list[Proposal]:
    """One round's items: parse them all, evaluate the new formulas (one batch through
    ``executor`` when given, :func:`backtest.remote_eval.evaluate_batch`; else each here, in
    turn), then gate them in order. Only this process writes leaderboard rows."""
    parsed = [_parse(rnd, item, stats, seen) for item in items]
    if executor is None:
        evs: dict[int, Any] = {}
    else:
        todo = [k for k, (_, expr, _, _) in enumerate(parsed) if expr is not None]
        evs = dict(zip(todo, evaluate_batch(ws, [parsed[k][1] for k in todo], executor,
                                            orient=True)))
    out = []
    for k, (p, expr, fields, index) in enumerate(parsed):
        if expr is not None:
            ev = evs[k] if k in evs else _evaluate_here(ws, expr)
            _gate(ws, store, cfg, settings, template, run_id, rnd, p, ev, fields, index,
                  stats, replay_of)
        out.append(p)
    return out


def _evaluate_here(ws: Workspace, expr) -> Any:
    try:
        return evaluate_candidate(ws, expr, orient=True)
    except Exception as e:  # noqa: BLE001 - one bad formula never stops the run
        return error_text(e)


def _parse(rnd: int, item: Any, stats: dict[str, Any], seen: set[str]) -> tuple:
    """Parse one reply item and count it: ``(proposal, expr or None, item fields, index)``
    (``expr`` None: a parse error or a repeat, already decided)."""
    text, name, rationale, direction = prompting.item_fields(item)
    stats["proposed"] += 1
    index = stats["proposed"]
    shown = text if isinstance(text, str) else repr(text)[:200]
    p = Proposal(rnd, name, shown, "parse_error")
    fields = (text, rationale, direction)
    try:
        expr = parse(text)
    except ParseError as e:
        stats["counts"]["parse_error"] += 1
        if len(stats["parse_errors"]) < 100:
            stats["parse_errors"].append(str(e)[:300])
        p.note = str(e)
        return p, None, fields, index
    stats["valid_formulas"] += 1
    if str(expr) in seen:
        stats["counts"]["repeat"] += 1
        p.status, p.note = "repeat", "proposed earlier in this run"
        return p, None, fields, index
    seen.add(str(expr))
    return p, expr, fields, index


def _gate(ws: Workspace, store: FactorStore, cfg: Config, settings: LLMRunSettings,
          template: str, run_id: str, rnd: int, p: Proposal, ev: Any, fields: tuple,
          index: int, stats: dict[str, Any], replay_of: str | None) -> None:
    """Record the evaluation ``ev`` (an Evaluated or an error text) of ``p`` and submit it."""
    text, rationale, direction = fields
    name = p.name
    if isinstance(ev, str):
        stats["counts"]["eval_error"] += 1
        p.status, p.note = "eval_error", ev
        return
    stats["evaluated"] += 1
    sign = -1.0 if ev.oriented else 1.0
    tr, va = _f(ev.reports["train"].rank_ic_mean), _f(ev.reports["valid"].rank_ic_mean)
    p.train = None if tr is None else sign * tr
    p.valid = None if va is None else sign * va
    p.canonical = ev.formula
    claimed = parse_direction(direction)
    if claimed is not None and p.train is not None and p.train != 0:
        stats["direction_claimed"] += 1
        stats["direction_right"] += int((p.train > 0) == (claimed > 0))
    prov = {"run_id": run_id, "template": template, "model": settings.model, "round": rnd,
            "rationale": rationale, "llm_name": name, "direction": direction,
            "formula_as_proposed": text, "oriented": ev.oriented}
    if replay_of:
        prov["replay_of"] = replay_of
    try:
        d = submit(ws, store, ev, name=f"llm_{run_id[-6:]}_r{rnd}_{index:02d}",
                   source="llm", cfg=cfg, provenance=prov,
                   description=rationale[:300])
    except AlphamineError as e:
        stats["counts"]["eval_error"] += 1
        p.status, p.note = "eval_error", f"{type(e).__name__}: {e}"[:300]
        return
    p.max_abs_corr = d.max_abs_corr
    if d.accepted:
        stats["accepted"] += 1
        p.status, p.id = "accepted", d.id
        p.novel = d.max_abs_corr is None or d.max_abs_corr < NOVELTY_CORR
        stats["novel"] += int(p.novel)
        p.note = "stored negated (train RankIC < 0)" if ev.oriented else ""
    else:
        stats["counts"][d.kind] = stats["counts"].get(d.kind, 0) + 1
        p.status, p.note = d.kind, d.reason


def parse_direction(text: str) -> int | None:
    """The model's claimed sign: ``+1`` (higher value -> higher return), ``-1``, or ``None``."""
    t = text.strip().lower()
    if t in ("+", "+1", "1", "positive", "pos", "long", "higher", "up"):
        return 1
    if t in ("-", "-1", "negative", "neg", "short", "lower", "down"):
        return -1
    return None


def template_stats(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Aggregate finished non-replay runs per template (sums, then percentages)."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        s = r.get("stats")
        if not s or r.get("replay_of"):
            continue
        a = out.setdefault(r["template"], {"runs": 0, "tokens_in": 0, "tokens_out": 0,
                                           "cost_est": 0.0, "cost_paid": 0.0, "proposed": 0,
                                           "valid_formulas": 0, "accepted": 0, "novel": 0})
        a["runs"] += 1
        for k in ("tokens_in", "tokens_out", "cost_est", "cost_paid", "proposed",
                  "valid_formulas", "accepted", "novel"):
            a[k] += s.get(k) or 0
    for a in out.values():
        a["valid_pct"] = _pct(a["valid_formulas"], a["proposed"])
        a["accepted_pct"] = _pct(a["accepted"], a["proposed"])
        a["novelty_pct"] = _pct(a["novel"], a["accepted"])
    return out

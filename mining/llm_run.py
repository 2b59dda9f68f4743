"""Entry points of the LLM producer: a run, a replay, the run statistics.

Same shape as the model producers (:func:`models.run.run_model`): settings in, a run record
(:class:`~mining.llm_loop.LLMRun`) out, progress through one callback
(:class:`~mining.llm_loop.LLMProgress` events). These functions open the LLM cache, the
leaderboard and the workspace (train+valid, ``model_dir = [model] out_dir``) and call
:func:`mining.llm_loop.run_loop`; with ``[cluster] address`` set, the rounds' formulas are
scored on that Ray cluster (:mod:`factors.cluster`). Library code: it never prints.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Callable

from backtest.candidates import make_workspace
from data.config import Config
from data.manifest import RunRecorder
from factors.cluster import cluster_settings, open_cluster
from factors.store import FactorStore
from mining import prompting
from mining.errors import LLMError
from mining.llm import from_config
from mining.llm_cache import LLMCache, Sender
from mining.llm_loop import (
    LLMProgress,
    LLMRun,
    LLMRunSettings,
    run_loop,
    template_stats,
)

__all__ = ["LLMStats", "run_llm", "replay_llm", "llm_stats"]


@dataclass
class LLMStats:
    """Every run recorded in the LLM cache and the per-template aggregates."""

    cache_path: str
    runs: list[dict[str, Any]]
    templates: dict[str, dict[str, Any]]


def run_llm(cfg: Config, settings: LLMRunSettings, *,
            on_progress: Callable[[LLMProgress], None] | None = None,
            use_cache: bool = True, sender: Sender | None = None,
            argv: Sequence[str] | None = None) -> LLMRun:
    """Mine factors with the LLM at ``[llm] base_url`` for ``settings.rounds`` rounds.

    Parameters
    ----------
    cfg : Config
    settings : LLMRunSettings
        See :meth:`LLMRunSettings.from_config`.
    on_progress : callable, optional
        Receives :class:`LLMProgress` events (``loading``, then one per ``round``).
    use_cache : bool, default True
        Answer identical requests from the cache (False: always ask the endpoint).
    sender : callable, optional
        The chat client (default :func:`mining.llm.from_config`, which needs an endpoint).
    argv : sequence of str, optional
        The ``mine`` command line, recorded in the run's manifest (:mod:`data.manifest`) for
        ``mine rerun``, which replays the run from the cache.

    Raises
    ------
    ConfigError
        No endpoint / model / key configured (the message says what to set); bad settings.
    LLMError
        Unknown template.
    """
    settings.validate()
    if sender is None:
        sender = from_config(cfg)
    prompting.get_template(settings.template, cfg.llm.prompts_dir)   # fail before loading
    return _run(cfg, settings, sender=sender, replay_of=None, use_cache=use_cache,
                on_progress=on_progress, argv=argv)


def replay_llm(cfg: Config, run_id: str, *,
               on_progress: Callable[[LLMProgress], None] | None = None,
               argv: Sequence[str] | None = None) -> LLMRun:
    """Re-run ``run_id`` with its recorded settings, serving every request from the cache (no
    network); the replay is a new run (``replay_of`` = ``run_id``).

    Raises
    ------
    LLMError
        ``run_id`` is not in the cache, a request was not recorded, or its template is gone.
    """
    with LLMCache(cfg.llm.cache_path) as cache:
        rec = cache.run(run_id)
    if rec is None:
        raise LLMError(f"--replay: run {run_id!r} is not in the LLM cache "
                       f"{str(cfg.llm.cache_path)!r} (`mine llm --stats` lists runs)")
    settings = LLMRunSettings(**rec["settings"])
    prompting.get_template(settings.template, cfg.llm.prompts_dir)
    return _run(cfg, settings, sender=None, replay_of=run_id, use_cache=True,
                on_progress=on_progress, argv=argv)


def llm_stats(cfg: Config) -> LLMStats:
    """The runs in the LLM cache (``[llm] cache_path``) and per-template aggregates of the
    finished runs that are not replays (:func:`mining.llm_loop.template_stats`)."""
    with LLMCache(cfg.llm.cache_path) as cache:
        runs = cache.runs()
    return LLMStats(str(cfg.llm.cache_path), runs, template_stats(runs))


def _run(cfg: Config, settings: LLMRunSettings, *, sender, replay_of, use_cache,
         on_progress, argv=None) -> LLMRun:
    if on_progress is not None:
        on_progress(LLMProgress("loading", f"loading {settings.universe} panels "
                                           f"(train+valid)..."))
    ws = make_workspace(cfg, settings.universe, model_dir=cfg.model.out_dir)
    manifest = RunRecorder("llm", cfg, argv=argv, settings=settings, store=cfg.store.path,
                           window=(ws.start, ws.end))
    with LLMCache(cfg.llm.cache_path) as cache, FactorStore(cfg.store.path) as store, \
            open_cluster(cluster_settings(cfg)) as executor:       # [cluster] address
        result = run_loop(ws, store, cache, cfg, settings, sender=sender, replay_of=replay_of,
                          use_cache=use_cache, on_progress=on_progress, executor=executor)
    st = result.stats
    manifest.write(result.run_id, results={
        "proposals": [{k: v for k, v in asdict(p).items() if k != "id"}
                      for p in result.proposals],
        "summary": {"proposed": st.get("proposed"), "accepted": st.get("accepted"),
                    "counts": st.get("counts"), "calls": st.get("calls"),
                    "drift": st.get("drift", 0), "replay_of": replay_of}})
    return result

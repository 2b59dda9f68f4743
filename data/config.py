"""Configuration: one TOML file (``mine.toml``) loaded into frozen dataclasses.

Lookup order for the file: explicit path, ``$ALPHAMINE_CONFIG``, ``./mine.toml``, the
``mine.toml`` beside the source tree (editable installs), else built-in defaults. Relative
paths inside the file are resolved against the file's directory. Secrets (``TUSHARE_TOKEN``,
``OPENAI_API_KEY``) are never read from or written to the config: only from the environment.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from data.errors import ConfigError

_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DataConfig:
    root: Path = _REPO_ROOT.parent / "shared" / "data" / "ashare"
    cache_dir: Path = _REPO_ROOT / ".alphamine" / "cache"


@dataclass(frozen=True)
class EvalConfig:
    horizon: int = 1
    quantiles: int = 5
    train: tuple[str, str] = ("2010-01-01", "2018-12-31")
    valid: tuple[str, str] = ("2019-01-01", "2021-12-31")
    test: tuple[str, str] = ("2022-01-01", "2026-12-31")
    embargo: int = 20
    min_listed_days: int = 60


@dataclass(frozen=True)
class StoreConfig:
    path: Path = _REPO_ROOT / ".alphamine" / "leaderboard.db"
    max_corr: float = 0.7
    min_valid_rank_ic: float = 0.01


@dataclass(frozen=True)
class GPConfig:
    universe: str = "csi300"
    start: str = "2010-01-01"
    end: str = "2021-12-31"
    population: int = 800
    generations: int = 8
    tournament_size: int = 10
    parsimony: float = 0.0002
    max_depth: int = 4
    seed: int = 42
    n_jobs: int = 1
    top: int = 20
    fields: tuple[str, ...] = ("open", "high", "low", "close", "vwap", "vol", "amount",
                               "turnover", "ret", "total_mv")


@dataclass(frozen=True)
class BacktestConfig:
    """``[backtest]``: combination, strategies, the account simulator and export (issue 3)."""
    universe: str = "csi300"
    start: str = "2019-01-01"           # default backtest window: valid + test
    end: str = "2026-12-31"
    init_cash: float = 1_000_000.0      # yuan
    execution: str = "open"             # fill price: "open" (next open) or "vwap"
    commission: float = 0.0003          # rate on traded value, both sides
    min_commission: float = 5.0         # yuan per order
    transfer_fee: float = 0.00001       # rate on traded value, both sides
    slippage_bps: float = 5.0           # adverse price move per fill, basis points
    participation: float = 0.1          # max share of the day's volume per order
    benchmark: str = "000300.SH"
    out_dir: Path = _REPO_ROOT / ".alphamine" / "backtest"
    # combination and strategy defaults (`mine combine`)
    top: int = 10                       # leaderboard members considered (valid.rank_icir order)
    method: str = "ic"                  # ic | icir | equal
    ic_window: int = 60                 # trailing days of RankIC behind the weights
    max_corr: float = 0.7               # |corr| on valid between members stays below
    strategy: str = "topn"              # topn | topk
    n: int = 50                         # names held
    rebalance: str = "5"                # daily | weekly | monthly | every k trading days
    n_drop: int = 5                     # topk: max replacements per rebalance
    # micro-cap preset (`mine backtest --preset microcap`; reference/microcap-strategy.md)
    microcap_universe: str = "all"
    microcap_mv_min: float = 2e9        # yuan (20 亿)
    microcap_mv_max: float = 3e9        # yuan (30 亿)
    microcap_hold: int = 3
    microcap_every: int = 5


@dataclass(frozen=True)
class LLMConfig:
    """``[llm]``: an OpenAI-compatible chat endpoint (issue 4). The key only from the environment."""
    base_url: str = ""                  # e.g. https://api.openai.com/v1, https://api.moonshot.cn/v1
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key
    temperature: float = 0.7
    max_tokens: int = 2048
    timeout: float = 60.0               # seconds per request
    max_retries: int = 4
    knowledge_cutoff: str = ""          # YYYY-MM-DD; warns when after the valid split start
    n_per_round: int = 8
    rounds: int = 3
    price_in_per_1m: float = 0.0        # currency units per 1M prompt tokens (cost estimate)
    price_out_per_1m: float = 0.0       # per 1M completion tokens
    cache_path: Path = _REPO_ROOT / ".alphamine" / "llm_cache.db"
    retry_wait: float = 1.0             # first backoff (s) on 429/5xx/timeouts, doubled, <= 30 s
    prompts_dir: Path = Path("prompts")  # user templates (*.md), besides the packaged ones


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: return models, walk-forward (issue 5)."""
    universe: str = "csi300"
    feature_set: str = "alpha158"
    retrain_months: int = 12
    out_dir: Path = _REPO_ROOT / ".alphamine" / "models"
    seed: int = 42
    start: str = "2010-01-01"           # first date of features / training rows
    first_test: str = "2019-01-01"      # OOS predictions from here (= start of [evaluate] valid)
    last_test: str = "2021-12-31"       # ... to here (test split stays sealed)
    train_years: int = 0                # rolling train window in years; 0 = expanding
    valid_months: int = 12              # early-stopping window before each test block
    embargo: int = 0                    # rows between train/valid/test; 0 = horizon + 1
    label_norm: str = "rank"            # "rank" ([-0.5, 0.5]) or "zscore"
    num_threads: int = 2
    lgbm_rounds: int = 1000             # max boosting rounds (early stopping on valid l2)
    lgbm_early_stopping: int = 20        # Qlib uses 50 (kept by the qlib-alpha158 preset)
    shap_rows: int = 2000               # valid rows explained for mean |SHAP|
    shap_inter_rows: int = 100          # rows for SHAP interaction values (O(F^2) each)
    shap_pairs: int = 5                 # top interaction pairs distilled into formulas


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    gp: GPConfig = field(default_factory=GPConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    source: Path | None = None          # the file this was loaded from (None = defaults)


_SECTIONS = {"data": DataConfig, "evaluate": EvalConfig, "store": StoreConfig, "gp": GPConfig,
             "backtest": BacktestConfig, "llm": LLMConfig, "model": ModelConfig}
_PATH_KEYS = {("data", "root"), ("data", "cache_dir"), ("store", "path"),
              ("backtest", "out_dir"), ("llm", "cache_path"), ("model", "out_dir"),
              ("llm", "prompts_dir")}


def find_config(path: str | os.PathLike | None = None) -> Path | None:
    """Return the config file to use (see module docstring), or ``None`` for defaults.

    Raises
    ------
    ConfigError
        If an explicitly given path (argument or ``$ALPHAMINE_CONFIG``) does not exist.
    """
    explicit = path or os.environ.get("ALPHAMINE_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found (from "
                              f"{'--config' if path else '$ALPHAMINE_CONFIG'})")
        return p.resolve()
    for cand in (Path.cwd() / "mine.toml", _REPO_ROOT / "mine.toml"):
        if cand.is_file():
            return cand.resolve()
    return None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load the configuration into frozen dataclasses.

    Raises
    ------
    ConfigError
        On a missing explicit file, invalid TOML, an unknown section or key, or a wrong type.
    """
    src = find_config(path)
    if src is None:
        return Config()
    try:
        raw = tomllib.loads(src.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{src}: invalid TOML: {e}") from None
    base = src.parent
    parts: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in _SECTIONS:
            # Sections for later capabilities (llm, model, backtest...) are allowed through.
            continue
        cls = _SECTIONS[section]
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{src}: unknown key [{section}] {key!r}; "
                                  f"known: {', '.join(known)}")
            if (section, key) in _PATH_KEYS:
                value = (base / Path(value).expanduser()).resolve()
            elif isinstance(value, list):
                value = tuple(value)
            default = getattr(cls(), key)
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ConfigError(f"{src}: [{section}] {key} must be a number, got {value!r}")
                value = type(default)(value)
            kwargs[key] = value
        parts[section] = cls(**kwargs)
    return replace(Config(), **parts, source=src)

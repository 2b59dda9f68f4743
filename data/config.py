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
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    gp: GPConfig = field(default_factory=GPConfig)
    source: Path | None = None          # the file this was loaded from (None = defaults)


_SECTIONS = {"data": DataConfig, "evaluate": EvalConfig, "store": StoreConfig, "gp": GPConfig}
_PATH_KEYS = {("data", "root"), ("data", "cache_dir"), ("store", "path")}


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

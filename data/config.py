"""Configuration: one TOML file (``mine.toml``) read by one loader into frozen dataclasses.

Each ``[section]`` of the file is a frozen dataclass defined next to the code it configures
(``[data]`` here: :class:`DataConfig`; ``[evaluate]`` in :mod:`backtest.context`, ``[store]``
in :mod:`factors.store`, ``[backtest]`` in :mod:`backtest.settings`, ``[gp]`` in
:mod:`mining.gp`, ``[llm]`` in :mod:`mining.llm`, ``[model]`` in :mod:`models.settings`). This
module knows none of them: the caller (the CLI) passes the *schema* ``{section: class}`` to
:func:`load_config`, which rejects unknown sections and keys by name, checks value types
against the dataclass defaults, numbers against the class's ``RANGES`` (if any), and resolves
``Path`` fields against the file's folder.

Lookup order for the file: explicit path, ``$ALPHAMINE_CONFIG``, ``./mine.toml``, the
``mine.toml`` beside the source tree (editable installs), else built-in defaults. Secrets
(``TUSHARE_TOKEN``, ``OPENAI_API_KEY``) are never read from or written to the config: only from
the environment.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from data.errors import ConfigError

__all__ = ["DataConfig", "Config", "find_config", "load_config", "section_from_dict",
           "range_text", "to_toml", "WORK_DIR", "PANEL_DTYPES"]

_REPO_ROOT = Path(__file__).resolve().parents[1]
#: Default folder of results (leaderboard, backtests, model runs, caches) without a config.
WORK_DIR = _REPO_ROOT / ".alphamine"
#: Accepted ``[data] dtype`` values: storage dtype of the float32-safe fields (data.fields).
PANEL_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: the warehouse and the derived-panel cache."""

    root: Path = _REPO_ROOT.parent / "shared" / "data" / "ashare"
    cache_dir: Path = WORK_DIR / "cache"
    dtype: str = "float64"      # float32: the quantity fields in float32 (data.fields.FieldSpec)
    cache_mb: float = 512.0     # in-memory LRU cache of raw warehouse columns (MiB)

    RANGES: ClassVar[dict] = {"cache_mb": (0, None)}

    def __post_init__(self) -> None:
        """Validate ``dtype`` (``float64`` or ``float32``; see :mod:`data.manager`)."""
        if self.dtype not in PANEL_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(PANEL_DTYPES)}, got "
                             f"{self.dtype!r}")


class Config:
    """The resolved configuration: one frozen settings object per section, plus its source.

    ``cfg.data``, ``cfg.evaluate`` ... return the section objects; a section the config was not
    built with raises :class:`AttributeError` naming it. Immutable; :meth:`replace` returns a
    copy with some sections swapped.

    Parameters
    ----------
    source : Path or None
        The file the values came from (``None``: built-in defaults).
    **sections
        Section name -> frozen dataclass instance.
    """

    __slots__ = ("_sections", "source")

    def __init__(self, source: Path | None = None, **sections: Any):
        object.__setattr__(self, "_sections", dict(sections))
        object.__setattr__(self, "source", source)

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_sections")[name]
        except KeyError:
            raise AttributeError(f"this configuration has no [{name}] section") from None

    def __setattr__(self, name, value):
        raise AttributeError("Config is immutable; use replace()")

    def __repr__(self) -> str:
        return f"Config(source={self.source!r}, sections={sorted(self._sections)})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Config) and self._sections == other._sections
                and self.source == other.source)

    def __hash__(self):
        return hash(tuple(sorted(self._sections)))

    def sections(self) -> dict[str, Any]:
        """Section name -> settings object (a shallow copy of the mapping)."""
        return dict(self._sections)

    def replace(self, **sections: Any) -> "Config":
        """A copy with the given sections replaced (or added)."""
        return Config(self.source, **{**self._sections, **sections})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain ``{section: {key: value}}`` (paths as str, tuples as lists): TOML/JSON-able."""
        def plain(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return v
        return {name: {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
                for name, obj in self._sections.items()}


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


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean (true/false)"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, Path):
        return "a string (a path)"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, tuple):
        return "a list"
    return type(v).__name__


def _in_range(v: float, lo: float | None, hi: float | None, lo_open: bool = False) -> bool:
    if isinstance(v, float) and not math.isfinite(v):
        return False
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return hi is None or v <= hi


def range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    """``">= 1"``, ``"> 0"``, ``"in [0, 1]"``, ``"in (0, 1]"``, ``"<= 5"``: a range in words."""
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"<= {hi:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"


def section_from_dict(name: str, cls: type, values: Mapping[str, Any], *,
                      base: Path | None = None, where: str = "config") -> Any:
    """Build section ``cls`` from ``values``; unknown keys, wrong types and values out of
    range raise ConfigError.

    ``Path`` fields are expanded (``~``) and resolved against ``base``; lists become tuples;
    integers are accepted for float fields (and converted). A section class may declare
    ``RANGES: ClassVar[dict]``, ``key -> (lo, hi)`` or ``(lo, hi, True)`` for a lower bound
    that is excluded (``None`` = unbounded): a numeric value outside is an error stating the
    range. Cross-field rules live in the class's ``__post_init__`` (a ValueError there is
    reported with the section name).

    Raises
    ------
    ConfigError
        ``"<where>: unknown key [name] 'k'; known: ..."`` or ``"... [name] k must be ..."``.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: [{name}] must be a table of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key [{name}] {key!r}; known: "
                              f"{', '.join(sorted(known))}")
        default = getattr(defaults, key)
        kind = "a string (a path)" if hints.get(key) is Path else _kind(default)
        bad = ConfigError(f"{where}: [{name}] {key} must be {kind}, got {value!r}")
        if hints.get(key) is Path:
            if not isinstance(value, str) or not value:
                raise bad
            p = Path(value).expanduser()
            value = (base / p).resolve() if base is not None else p
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise bad
        elif isinstance(default, (int, float)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise bad
            if isinstance(default, int) and isinstance(value, float):
                if not value.is_integer():
                    raise bad
            value = type(default)(value)
            rng = getattr(cls, "RANGES", {}).get(key)
            if rng is not None and not _in_range(value, *rng):
                raise ConfigError(f"{where}: [{name}] {key} must be {range_text(*rng)}, "
                                  f"got {value!r}")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise bad
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise bad
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: [{name}] {e}") from None


def load_config(path: str | os.PathLike | None, schema: Mapping[str, type]) -> Config:
    """Load the configuration file into one settings object per section of ``schema``.

    Parameters
    ----------
    path : path or None
        Explicit file; ``None`` looks it up (module docstring).
    schema : mapping of str to dataclass type
        Every section the file may hold; sections absent from the file get the class defaults.

    Returns
    -------
    Config
        With ``source`` the file read (``None`` when defaults were used).

    Raises
    ------
    ConfigError
        On a missing explicit file, unreadable or invalid TOML, an unknown section or key, or a
        value of the wrong type (the message names the file, section and key).
    """
    src = find_config(path)
    parts = {name: cls() for name, cls in schema.items()}
    if src is None:
        return Config(None, **parts)
    try:
        raw = tomllib.loads(src.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{src}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{src}: cannot read: {e.strerror or e}") from None
    for name, values in raw.items():
        if name not in schema:
            raise ConfigError(f"{src}: unknown section [{name}]; known: "
                              f"{', '.join(f'[{s}]' for s in schema)}")
        parts[name] = section_from_dict(name, schema[name], values, base=src.parent,
                                        where=str(src))
    return Config(src, **parts)


def _toml_value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v), ensure_ascii=False)     # a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, where) for x in v) + "]"
    raise ConfigError(f"{where}: {v!r} cannot be written to TOML")


def to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """``{section: {key: value}}`` (:meth:`Config.to_dict`) as ``mine.toml`` text that
    :func:`load_config` reads back to the same values (paths are written as given: write
    absolute ones). ``None`` values are left out (the key takes its default).

    Raises
    ------
    ConfigError
        A value that is not a bool, number, string, path or list of them.
    """
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, v in values.items():
            if v is not None:
                lines.append(f"{key} = {_toml_value(v, f'[{name}] {key}')}")
        lines.append("")
    return "\n".join(lines)

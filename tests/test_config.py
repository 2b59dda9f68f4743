"""Config loading: defaults, relative paths, bad keys and types give clear errors."""
from pathlib import Path

import pytest

from data.errors import ConfigError
from mining.cli_app import load as load_config


def test_repo_config_points_at_shared_data():
    cfg = load_config(Path(__file__).resolve().parents[1] / "mine.toml")
    assert cfg.data.root.name == "ashare"
    assert cfg.evaluate.embargo >= cfg.evaluate.horizon
    assert cfg.gp.universe == "csi300"


def test_relative_paths_resolve_against_file(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('[data]\nroot = "wh"\n[store]\npath = "lb.db"\n[gp]\npopulation = 10\n')
    cfg = load_config(p)
    assert cfg.data.root == (tmp_path / "wh").resolve()
    assert cfg.store.path == (tmp_path / "lb.db").resolve()
    assert cfg.gp.population == 10 and cfg.gp.generations == 8


def test_unknown_key_and_bad_type(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text("[gp]\npopulaton = 10\n")
    with pytest.raises(ConfigError, match="populaton"):
        load_config(p)
    p.write_text('[gp]\npopulation = "many"\n')
    with pytest.raises(ConfigError, match="population must be an integer"):
        load_config(p)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_section_named(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text("[gpp]\npopulation = 10\n")
    with pytest.raises(ConfigError, match=r"unknown section \[gpp\]"):
        load_config(p)


def test_wrong_type_for_path_and_string(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text("[data]\nroot = 5\n")
    with pytest.raises(ConfigError, match=r"\[data\] root must be a string"):
        load_config(p)
    p.write_text("[gp]\nuniverse = 300\n")
    with pytest.raises(ConfigError, match=r"\[gp\] universe must be a string"):
        load_config(p)


def test_shipped_mine_toml_equals_the_defaults():
    """One source of settings: the shipped mine.toml restates the dataclass defaults exactly,
    apart from paths (resolved against the file) and keys it leaves out."""
    import dataclasses

    from mining.cli_app import SCHEMA
    path = Path(__file__).resolve().parents[1] / "mine.toml"
    cfg = load_config(path)
    for name, cls in SCHEMA.items():
        default, loaded = cls(), getattr(cfg, name)
        for f in dataclasses.fields(cls):
            if isinstance(getattr(default, f.name), Path):
                continue
            assert getattr(loaded, f.name) == getattr(default, f.name), (name, f.name)


@pytest.mark.parametrize("body, msg", [
    ('valid = ["2017-01-01", "2021-12-31"]', "valid starts 2017-01-01 on or before the end of train"),
    ('test = ["2021-06-01", "2026-12-31"]', "test starts 2021-06-01 on or before the end of valid"),
    ('train = ["2018-12-31", "2010-01-01"]', "train starts 2018-12-31 after it ends"),
    ('embargo = 0', "embargo 0 must be >= horizon 1"),
    ('train = ["2010-13-01", "2018-12-31"]', "dates must be YYYY-MM-DD"),
])
def test_evaluate_splits_validated(tmp_path, body, msg):
    p = tmp_path / "mine.toml"
    p.write_text(f"[evaluate]\n{body}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "[evaluate]" in str(e.value) and msg in str(e.value)


def test_defaults_are_inside_the_declared_ranges():
    """Every section's ``RANGES`` admits its own defaults (and so the shipped mine.toml)."""
    import dataclasses

    from data.config import _in_range
    from mining.cli_app import SCHEMA
    for name, cls in SCHEMA.items():
        known = {f.name for f in dataclasses.fields(cls)}
        for key, rng in getattr(cls, "RANGES", {}).items():
            assert key in known, f"[{name}] RANGES names unknown key {key!r}"
            assert _in_range(getattr(cls(), key), *rng), f"[{name}] {key} default out of range"

"""``[model]`` settings: return models trained walk-forward (LightGBM, transformer).

Read from ``mine.toml`` by :func:`data.config.load_config`; consumed by :mod:`models.lgbm_run`,
:mod:`models.transformer_run` and :mod:`models.run_common`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from data.config import WORK_DIR

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: return models, walk-forward (issue 5)."""

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {
        "retrain_months": (1, None), "train_years": (0, None), "valid_months": (1, None),
        "embargo": (0, None), "num_threads": (1, None), "lgbm_rounds": (1, None),
        "lgbm_early_stopping": (1, None)}

    universe: str = "csi300"
    feature_set: str = "alpha158"
    retrain_months: int = 12
    out_dir: Path = WORK_DIR / "models"
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
    shap_rows: int = 2000               # rows explained for mean |SHAP| (all before
    #                                     [evaluate] valid: models.distill's fold-clean rule)
    shap_inter_rows: int = 100          # rows for SHAP interaction values (O(F^2) each)
    shap_pairs: int = 5                 # top interaction pairs distilled into formulas

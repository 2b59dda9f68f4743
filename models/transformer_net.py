"""The transformer return network: its settings, the ``nn.Module`` and its persistence.

torch is an optional extra (``pip install torch==2.13.0`` then ``pip install -e '.[torch]'``):
it is imported lazily (:func:`torch_module`), on the first call that needs it; importing this
module never does. Training and prediction live in :mod:`models.transformer`.

Network
    ``Linear(F, d_model)`` + learned position embedding -> ``nn.TransformerEncoder``
    (``n_layers`` pre-norm layers, ``n_heads`` heads, ``d_ff`` feed-forward width -- small: the
    PyTorch default of 2048 is far too slow on CPU; ``batch_first=True``; padded positions
    masked) -> last-token or masked-mean pooling -> LayerNorm -> linear heads
    (``return``, plus ``sharpe`` and ``drawdown`` with ``multitask``).
Persistence
    ``model.pt`` holds ``state_dict()`` (loaded with ``torch.load(weights_only=True)``), and
    ``config.json`` the :class:`TransformerConfig` plus metadata; both written atomically.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from data.errors import ConfigError
from data.io import atomic_write, write_json_atomic
from factors.errors import StoreError

#: Message of the ImportError raised when torch is missing.
TORCH_HINT = ("the transformer model needs PyTorch: pip install torch==2.13.0 "
              "then pip install -e '.[torch]'")

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"


def torch_module():
    # Passive OpenMP waiting: with active spinning, 2 intra-op threads on a machine whose
    # cores are busy with other processes ran ~10x slower than 1 thread (docs/transformer.md).
    # libgomp reads it when torch is first loaded (no effect if torch was imported earlier);
    # a value set by the user wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError as exc:          # pragma: no cover - depends on the environment
        raise ImportError(TORCH_HINT) from exc
    return torch


# ---------------------------------------------------------------- config

@dataclass(frozen=True)
class TransformerConfig:
    """Architecture and training settings (all JSON-serialisable).

    Defaults are sized for a 2-core CPU: ``d_model=32``, 2 layers, 4 heads, ``d_ff=64``;
    ``dates_per_epoch`` random training dates per epoch.
    """

    seq_len: int = 20
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    dropout: float = 0.1
    pooling: str = "last"                  # "last" | "mean"
    multitask: bool = False
    path_horizon: int = 5
    loss_weights: tuple[float, float, float] = (0.4, 0.3, 0.3)
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    dates_per_batch: int = 4
    dates_per_epoch: int = 200
    patience: int = 3
    threads: int = 2
    seed: int = 42

    def __post_init__(self):
        ints = {"seq_len": 1, "d_model": 1, "n_heads": 1, "n_layers": 1, "d_ff": 1,
                "path_horizon": 1, "epochs": 1, "dates_per_batch": 1, "dates_per_epoch": 1,
                "patience": 1, "threads": 1}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(f"transformer config: {name} must be an integer >= {lo}, "
                                  f"got {v!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"transformer config: d_model ({self.d_model}) must be divisible "
                              f"by n_heads ({self.n_heads})")
        if self.pooling not in ("last", "mean"):
            raise ConfigError(f"transformer config: pooling must be 'last' or 'mean', "
                              f"got {self.pooling!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"transformer config: dropout must be in [0, 1), got {self.dropout}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.grad_clip >= 0):
            raise ConfigError("transformer config: lr must be > 0, weight_decay and grad_clip >= 0")
        w = tuple(float(x) for x in self.loss_weights)
        if len(w) != 3 or min(w) < 0 or w[0] <= 0:
            raise ConfigError(f"transformer config: loss_weights must be 3 non-negative numbers "
                              f"with a positive return weight, got {self.loss_weights!r}")
        object.__setattr__(self, "loss_weights", w)

    @property
    def n_outputs(self) -> int:
        """Number of heads: 1 (return) or 3 (return, sharpe, drawdown)."""
        return 3 if self.multitask else 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["loss_weights"] = list(self.loss_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        """Build from a dict; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"transformer config: unknown keys {bad}")
        d = dict(d)
        if "loss_weights" in d:
            d["loss_weights"] = tuple(d["loss_weights"])
        return cls(**d)


# ---------------------------------------------------------------- network

_NET_CLASS = None


def _net_class():
    """The ``nn.Module`` class (defined on first use so that torch stays optional)."""
    global _NET_CLASS
    if _NET_CLASS is not None:
        return _NET_CLASS
    torch = torch_module()
    nn = torch.nn

    class ReturnTransformer(nn.Module):
        """Input projection -> TransformerEncoder -> pooling -> heads (see module docstring)."""

        def __init__(self, n_features: int, cfg: TransformerConfig):
            super().__init__()
            self.pooling = cfg.pooling
            self.inp = nn.Linear(n_features, cfg.d_model)
            self.pos = nn.Parameter(torch.randn(cfg.seq_len, cfg.d_model) * 0.02)
            layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.n_layers,
                                                 enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.d_model)
            self.heads = nn.Linear(cfg.d_model, cfg.n_outputs)

        def forward(self, x, pad):
            """``x`` (B, L, F) float32, ``pad`` (B, L) bool -> (B, n_outputs)."""
            h = self.inp(x) + self.pos
            h = self.encoder(h, src_key_padding_mask=pad)
            if self.pooling == "last":
                z = h[:, -1]
            else:
                keep = (~pad).unsqueeze(-1).to(h.dtype)
                z = (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)
            return self.heads(self.norm(z))

    _NET_CLASS = ReturnTransformer
    return _NET_CLASS


def build_model(n_features: int, cfg: TransformerConfig):
    """A freshly initialised network for ``n_features`` inputs (seeded by ``cfg.seed``)."""
    torch = torch_module()
    torch.manual_seed(cfg.seed)
    return _net_class()(int(n_features), cfg)


# ---------------------------------------------------------------- persistence

def save_model(model, cfg: TransformerConfig, directory, *, n_features: int,
               meta: dict | None = None) -> Path:
    """Write ``model.pt`` (``state_dict``) and ``config.json`` into ``directory`` atomically.

    Parameters
    ----------
    model : ReturnTransformer
    cfg : TransformerConfig
    directory : path-like
        Created when missing.
    n_features : int
        Input width (needed to rebuild the network).
    meta : dict, optional
        JSON-serialisable extras (feature names, dates, metrics).

    Returns
    -------
    Path
        ``directory``.
    """
    torch = torch_module()
    d = Path(directory)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(d / MODEL_FILE, lambda p: torch.save(state, p))
    write_json_atomic(d / CONFIG_FILE, {"format": "alphamine-transformer-1",
                                        "n_features": int(n_features),
                                        "config": cfg.to_dict(), "meta": meta or {}})
    return d


def load_model(directory):
    """Load a model saved by :func:`save_model` (``torch.load(weights_only=True)``).

    Returns
    -------
    model, cfg, meta : ReturnTransformer (eval mode), TransformerConfig, dict

    Raises
    ------
    StoreError
        When a file is missing or unreadable, or the weights do not fit the config.
    """
    torch = torch_module()
    d = Path(directory)
    try:
        doc = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
        cfg = TransformerConfig.from_dict(doc["config"])
        n_features = int(doc["n_features"])
        state = torch.load(d / MODEL_FILE, weights_only=True, map_location="cpu")
    except (OSError, ValueError, KeyError, ConfigError, RuntimeError) as exc:
        raise StoreError(f"cannot load transformer model from {d}: {exc}") from exc
    model = _net_class()(n_features, cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise StoreError(f"transformer weights in {d} do not match its config: {exc}") from exc
    model.eval()
    return model, cfg, doc.get("meta", {})

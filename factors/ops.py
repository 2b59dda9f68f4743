"""Load every operator module so that its ``@register`` decorators fill the registry.

Import :mod:`factors.registry` (``get_op``, ``all_ops``) to use the operators; it imports this
module on first use.
"""
from __future__ import annotations

from factors import ops_cs, ops_elementwise, ops_ts, ops_ts_order  # noqa: F401

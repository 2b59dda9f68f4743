"""Errors of the mining layer."""
from __future__ import annotations

from data.errors import AlphamineError

__all__ = ["LLMError"]


class LLMError(AlphamineError):
    """An LLM endpoint, prompt template or reply cache cannot serve the request."""

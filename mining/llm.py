"""The OpenAI-compatible chat client of the LLM producer (the only module importing ``openai``).

Works against any endpoint speaking the OpenAI chat-completions API: OpenAI, Moonshot/Kimi
(``https://api.moonshot.cn/v1``), DeepSeek (``https://api.deepseek.com/v1``), a local vLLM or
Ollama (``http://localhost:11434/v1``). Settings come from ``mine.toml`` ``[llm]``; the API key
only from the environment variable named by ``[llm] api_key_env`` (default
``OPENAI_API_KEY``). The key is handed to the client object and nowhere else: it is never
logged, printed, cached or part of a cache key.

Retries: the ``openai`` client's own retries are switched off (``max_retries=0``); this module
retries with exponential backoff (``tenacity``; first wait ``retry_wait`` seconds, doubled,
capped at 30 s) on HTTP 408/409/429/5xx, timeouts and connection errors, at most
``max_retries`` times. Other HTTP errors (400, 401, 404...) fail at once. A request that still
fails raises :class:`mining.llm_cache.CallFailed` with ``kind`` ``timeout`` or ``http_error``;
the loop counts it and carries on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import openai
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from data.config import WORK_DIR, Config
from data.errors import ConfigError
from mining.llm_cache import CallFailed, ChatReply

_RETRY_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class LLMConfig:
    """``[llm]``: an OpenAI-compatible chat endpoint (issue 4). The key only from the environment."""

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {
        "temperature": (0, 2), "max_tokens": (1, None), "timeout": (0, None, True),
        "max_retries": (0, None), "n_per_round": (1, None), "rounds": (1, None),
        "price_in_per_1m": (0, None), "price_out_per_1m": (0, None), "retry_wait": (0, None)}

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
    cache_path: Path = WORK_DIR / "llm_cache.db"
    retry_wait: float = 1.0             # first backoff (s) on 429/5xx/timeouts, doubled, <= 30 s
    prompts_dir: Path = Path("prompts")  # user templates (*.md), besides the packaged ones


def endpoint_problem(cfg: Config) -> str | None:
    """Why no endpoint can be used (a message naming the settings to set), or ``None``."""
    llm = cfg.llm
    where = str(cfg.source) if cfg.source else "mine.toml (none found: built-in defaults)"
    missing = [f"[llm] {k}" for k in ("base_url", "model") if not getattr(llm, k)]
    key_set = bool(os.environ.get(llm.api_key_env, ""))
    if not missing and key_set:
        return None
    parts = []
    if missing:
        parts.append(f"set {' and '.join(missing)} in {where} (e.g. base_url = "
                     "\"https://api.openai.com/v1\", model = \"gpt-4o-mini\"; Kimi: "
                     "\"https://api.moonshot.cn/v1\"; local Ollama: \"http://localhost:11434/v1\")")
    if not key_set:
        parts.append(f"export the API key in the environment variable ${llm.api_key_env} "
                     "(named by [llm] api_key_env; any non-empty value for a local server "
                     "that needs no key)")
    return "no LLM endpoint configured: " + "; ".join(parts) + \
        ". See docs/llm.md; `mine llm --replay RUN_ID` needs none of these."


def _kind(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, openai.APITimeoutError) else "http_error"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):       # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    return False


def _label(exc: BaseException) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        return f"http_{exc.status_code}"
    return "connection"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} from the endpoint: {str(exc.message)[:200]}"
    if isinstance(exc, openai.APITimeoutError):
        return "the request timed out"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class OpenAIChat:
    """A callable ``messages -> ChatReply`` over the official ``openai`` client.

    Parameters
    ----------
    llm : LLMConfig
        Endpoint, model, sampling parameters, timeout (seconds) and retry policy.
    api_key : str
        The key (read from the environment by :func:`from_config`); kept only in the client.

    Raises
    ------
    ConfigError
        If ``base_url`` or ``model`` is empty.
    """

    def __init__(self, llm: LLMConfig, api_key: str):
        if not llm.base_url or not llm.model:
            raise ConfigError("[llm] base_url and [llm] model must be set")
        self.llm = llm
        self._client = openai.OpenAI(base_url=llm.base_url, api_key=api_key or "none",
                                     timeout=float(llm.timeout), max_retries=0)

    @property
    def params(self) -> dict[str, Any]:
        """Sampling parameters sent with every request (part of the cache key)."""
        return {"temperature": float(self.llm.temperature), "max_tokens": int(self.llm.max_tokens)}

    def _once(self, messages: Sequence[Mapping[str, str]]) -> ChatReply:
        resp = self._client.chat.completions.create(
            model=self.llm.model, messages=[dict(m) for m in messages], **self.params)
        usage = getattr(resp, "usage", None)
        choices = getattr(resp, "choices", None) or []
        msg = choices[0].message if choices else None
        return ChatReply(content=getattr(msg, "content", None),
                         finish_reason=choices[0].finish_reason if choices else None,
                         prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                         completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0))

    def __call__(self, messages: Sequence[Mapping[str, str]]) -> ChatReply:
        """Send one chat request with retries.

        Raises
        ------
        CallFailed
            After the last retry (``kind`` ``timeout`` or ``http_error``) or at once on a
            non-retryable HTTP status. ``retries`` counts the retried errors by label
            (``http_429``, ``http_500``, ``timeout``, ``connection``).
        """
        retries: dict[str, int] = {}

        def count(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                lab = _label(exc)
                retries[lab] = retries.get(lab, 0) + 1

        retrying = Retrying(stop=stop_after_attempt(max(0, int(self.llm.max_retries)) + 1),
                            wait=wait_exponential(multiplier=float(self.llm.retry_wait),
                                                  min=0, max=30),
                            retry=retry_if_exception(_retryable), before_sleep=count,
                            reraise=True)
        try:
            reply = retrying(self._once, messages)
        except (openai.APIError, openai.OpenAIError) as e:
            raise CallFailed(_kind(e), _describe(e), retries) from None
        reply.retries = retries
        return reply


def from_config(cfg: Config) -> OpenAIChat:
    """The chat client for ``cfg`` (key from ``$[llm] api_key_env``).

    Raises
    ------
    ConfigError
        When the endpoint, model or key is missing (the message says what to set).
    """
    problem = endpoint_problem(cfg)
    if problem:
        raise ConfigError(problem)
    return OpenAIChat(cfg.llm, os.environ[cfg.llm.api_key_env])

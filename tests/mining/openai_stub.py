"""A tiny OpenAI-compatible chat-completions server (stdlib only) for tests and demos.

It answers ``POST /v1/chat/completions`` (and ``/chat/completions``) with real OpenAI JSON:
``id, object, created, model, choices[{index, message{role, content}, finish_reason}],
usage{prompt_tokens, completion_tokens, total_tokens}``. Replies come from a *script* (a list
of steps consumed one per request) and, once it is exhausted, from a *responder* (by default
the demo bank below). A step is a dict:

``{"content": "..."}``            200 with that message content (``None`` -> null content)
``{"status": 429}``               an error status with an OpenAI-style error body
``{"sleep": 1.0, ...}``           wait first (longer than the client timeout = a timeout)

Demo (no network, no key needed beyond a dummy one)::

    python tests/mining/openai_stub.py --port 8765        # in one shell
    export OPENAI_API_KEY=stub                            # in another
    mine llm --prompt liquidity --rounds 3 --base-url http://127.0.0.1:8765/v1 --model stub

The demo replies are canned formulas about liquidity, not an LLM: they exist to exercise the
loop end to end (including one unknown operator per round, to show the error accounting).
"""
from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

#: Canned liquidity ideas served by the demo responder, 8 per round (round = number of
#: assistant turns in the request). Each round has one formula with an unknown operator.
DEMO_BANK: list[tuple[str, str, str]] = [
    ("amihud_illiq_20", "-ts_mean(abs(ret) / (amount + 1.0), 20)",
     "Amihud illiquidity: price impact per yuan traded; illiquid names earn a premium."),
    ("turnover_shock", "-(ts_mean(turnover, 5) / ts_mean(turnover, 60))",
     "Abnormal turnover relative to its quarter mean: attention spikes mean-revert."),
    ("amp_per_turnover", "-ts_mean((high - low) / close / (turnover + 0.01), 20)",
     "Shock impact: daily range per unit of turnover (immediacy of liquidity)."),
    ("rlsf_causal",
     "-ts_ema((high - low) / close / (cs_zscore(turnover) + 3.0) * abs(close / ts_delay(close, 3)"
     " - 1.0) / ((high - low) / close + 0.000001), 20)",
     "Causal RLSF: shock impact times the 3-day price move looking BACK, smoothed by an EMA."),
    ("vol_cv", "-(ts_std(vol, 20) / ts_mean(vol, 20))",
     "Volume instability: a stable order flow means a deeper market."),
    ("illiq_amihud_v2", "ts_amihud(ret, amount, 20)",
     "An operator the language does not have (the stub shows how errors are fed back)."),
    ("price_volume_corr", "-ts_corr(cs_rank(vol), cs_rank(close), 10)",
     "Price-volume co-movement: trend-chasing volume reverses."),
    ("turnover_level", "-cs_rank(ts_mean(turnover, 20))",
     "High turnover names are over-traded and underperform."),
    ("range_impact_60", "-ts_mean((high - low) / vwap, 60) / ts_mean(turnover, 60)",
     "Range per turnover over a quarter: slower liquidity measure."),
    ("gap_reversal", "-(open / ts_delay(close, 1) - 1.0) * cs_rank(turnover)",
     "Overnight gaps on busy names revert."),
    ("vwap_dev", "-(close / vwap - 1.0)",
     "Closing above the VWAP signals late buying pressure that reverts."),
    ("liquidity_beta", "ts_liquidity_beta(ret, turnover, 60)",
     "Another unknown operator (error accounting)."),
    ("amount_trend", "-ts_delta(log(amount + 1.0), 5)",
     "Rising traded value means crowded names."),
    ("turnover_skew", "-ts_skew(turnover, 20)",
     "Turnover spikes (positive skew) flag lottery-like trading."),
    ("range_zscore", "-ts_zscore((high - low) / close, 20)",
     "A wide day relative to its own history: a liquidity shock."),
    ("size_liquidity", "-cs_rank(log(total_mv)) * cs_rank(ts_mean(turnover, 20))",
     "Large and busy names are the most crowded."),
    ("decay_turnover", "-ts_decay_linear(turnover, 10)",
     "Recent turnover weighted more: a fast attention measure."),
    ("close_pos", "-((close - low) / (high - low + 0.001))",
     "Close near the high after heavy trading reverts."),
    ("illiq_rank", "cs_rank(ts_mean(abs(ret) / (amount + 1.0), 60))",
     "Amihud over a quarter, ranked."),
    ("spread_proxy", "-ts_mean(abs(close - open) / (high - low + 0.001), 10)",
     "Body-to-range ratio as an effective-spread proxy."),
    ("vol_price_div", "-ts_corr(ret, ts_delta(vol, 1), 20)",
     "Volume changes that confirm returns signal momentum crowding."),
    ("bad_syntax", "ts_mean(close, 20) ** 2",
     "A formula with an operator outside the grammar (error accounting)."),
    ("turnover_mad", "-ts_mad(turnover, 20) / ts_median(turnover, 20)",
     "Robust turnover dispersion."),
    ("argmax_vol", "ts_argmax(vol, 20)",
     "Days since the volume peak: stale attention."),
]


def demo_reply(request: dict[str, Any]) -> str:
    """The demo responder: the next 8 (or the requested n) factors of :data:`DEMO_BANK`."""
    msgs = request.get("messages") or []
    rnd = sum(1 for m in msgs if m.get("role") == "assistant")
    last = next((m.get("content", "") for m in reversed(msgs) if m.get("role") == "user"), "")
    m = re.search(r"Propose (\d+)", last or "")
    n = int(m.group(1)) if m else 8
    start = (rnd * n) % len(DEMO_BANK)
    items = [DEMO_BANK[(start + i) % len(DEMO_BANK)] for i in range(n)]
    body = {"factors": [{"name": a, "formula": f, "rationale": r + " (stub server demo reply)",
                         "direction": "+"} for a, f, r in items]}
    return "Here are the factors:\n```json\n" + json.dumps(body, indent=1) + "\n```"


def completion_json(content: str | None, model: str, prompt_tokens: int,
                    n: int) -> dict[str, Any]:
    """A chat.completion object as the OpenAI API returns it."""
    completion_tokens = 0 if not content else max(1, len(content) // 4)
    return {"id": f"chatcmpl-stub{n:06d}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class StubServer:
    """Serve scripted chat completions on 127.0.0.1 (a random free port unless given).

    Attributes
    ----------
    base_url : str
        ``http://127.0.0.1:PORT/v1`` (pass as ``[llm] base_url``).
    requests : list of dict
        Every request body received, in order (with ``_auth`` = whether a bearer key came).
    """

    def __init__(self, script: list[dict[str, Any]] | None = None,
                 responder: Callable[[dict[str, Any]], str] = demo_reply, port: int = 0):
        self.script = list(script or [])
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            def do_POST(self) -> None:  # noqa: N802
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}",
                                               "type": "invalid_request_error"}})
                    return
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    req = json.loads(raw)
                except ValueError:
                    self._send(400, {"error": {"message": "invalid JSON body",
                                               "type": "invalid_request_error"}})
                    return
                req["_auth"] = (self.headers.get("Authorization") or "").startswith("Bearer ")
                with outer._lock:
                    outer.requests.append(req)
                    n = len(outer.requests)
                    step = outer.script.pop(0) if outer.script else None
                if step and step.get("sleep"):
                    time.sleep(float(step["sleep"]))
                status = int(step.get("status", 200)) if step else 200
                if status != 200:
                    self._send(status, {"error": {"message": f"stub error {status}",
                                                  "type": "server_error", "code": status}})
                    return
                content = step["content"] if step and "content" in step else \
                    outer.responder(req)
                prompt_tokens = sum(len(str(m.get("content", ""))) for m in
                                    req.get("messages", [])) // 4
                self._send(200, completion_json(content, req.get("model", "stub"),
                                                prompt_tokens, n))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> StubServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the demo server in the foreground until Ctrl-C."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args(argv)
    srv = StubServer(port=args.port)
    print(f"OpenAI-compatible stub serving {srv.base_url} (Ctrl-C to stop)", flush=True)
    try:
        srv._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv._httpd.server_close()


if __name__ == "__main__":
    main()

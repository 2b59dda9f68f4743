"""Prompt templates for the LLM factor producer: discovery, rendering, replies and feedback.

Templates are Markdown files (``prompts/*.md`` shipped with the package, plus ``*.md`` files in
the user directory ``[llm] prompts_dir``, default ``./prompts``; a user file of the same name
overrides the packaged one). The first line (``# Title``) is the description shown by
``mine prompts``. Placeholders ``{{name}}`` are replaced by text rendered from the live
registries, never hand-copied:

``{{grammar}}``       the formula grammar (from :mod:`factors.expr_parse` and the operator registry)
``{{operators}}``     the operator table, one line of doc each (:func:`factors.operators.all_ops`)
``{{fields}}``        the fields with their units (:data:`data.fields.FIELDS`)
``{{examples}}``      current leaderboard members with their train/valid RankIC
``{{pool_gaps}}``     the pool by theme: missing themes, the most crowded one, and the members
                      that can be referenced as ``factor("<name>")`` (:mod:`mining.pool_gaps`);
                      optional: a template without it renders as before
``{{reply_format}}``  the JSON reply format
``{{n}}``, ``{{universe}}``, ``{{horizon}}``   numbers of the run

A section the template does not place itself (grammar, operators, fields, reply format) is
appended, so a three-line template still yields a complete prompt. Replacement is a plain
string substitution (no ``str.format``), and an unknown placeholder is an error naming it.

The LLM's reply is only ever *read* here as JSON (:func:`extract_factors`); its formulas go
to :func:`factors.expr_parse.parse` and nowhere else.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from mining.errors import LLMError

#: The packaged templates directory (``prompts/`` beside ``mining/``).
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "prompts"
#: Placeholders a template may use.
PLACEHOLDERS = ("grammar", "operators", "fields", "examples", "pool_gaps", "reply_format", "n",
                "universe", "horizon")
_REQUIRED = ("grammar", "operators", "fields", "reply_format")
_PH = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
#: Longest reply text searched for JSON (characters); the rest is ignored.
MAX_REPLY_CHARS = 200_000

SYSTEM_PROMPT = (
    "You are a senior quantitative researcher designing stock-selection factors for Chinese "
    "A-shares. You write factors only in the formula language described by the user (never "
    "Python, never code), and you answer with one JSON object and nothing else.")

REPLY_FORMAT = """Answer with exactly one JSON object, no prose before or after it:

```json
{"factors": [
  {"name": "short_snake_case_name",
   "formula": "a formula in the language above, e.g. -ts_corr(cs_rank(vol), cs_rank(close), 10)",
   "rationale": "one or two sentences: the economic idea and the construction steps",
   "direction": "+ if a higher value should predict a higher next-day return, else -"}
]}
```"""


@dataclass(frozen=True)
class Template:
    """One prompt template file."""

    name: str
    path: Path
    description: str
    packaged: bool

    def text(self) -> str:
        """The raw template text (UTF-8)."""
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as e:
            raise LLMError(f"cannot read prompt template {str(self.path)!r}: {e}") from None


def _describe(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline().strip()
    except (OSError, UnicodeDecodeError):
        return "(unreadable)"
    return first.lstrip("#").strip() or path.stem


def list_templates(user_dir: str | Path | None = None) -> list[Template]:
    """All templates: packaged ones, then those of ``user_dir`` (overriding by name).

    Parameters
    ----------
    user_dir : path, optional
        Directory of user templates (``*.md``); a missing directory is simply empty.

    Returns
    -------
    list of Template, sorted by name.
    """
    found: dict[str, Template] = {}
    dirs = [(PACKAGED_DIR, True)]
    if user_dir is not None:
        u = Path(user_dir).expanduser().resolve()
        if u != PACKAGED_DIR.resolve():
            dirs.append((u, False))
    for d, packaged in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.md")):
            if p.name.lower() == "readme.md" or not _NAME.match(p.stem):
                continue
            found[p.stem] = Template(p.stem, p, _describe(p), packaged)
    return [found[k] for k in sorted(found)]


def get_template(name: str, user_dir: str | Path | None = None) -> Template:
    """The template called ``name``; :class:`LLMError` listing the known ones otherwise."""
    ts = {t.name: t for t in list_templates(user_dir)}
    if name not in ts:
        raise LLMError(f"unknown prompt template {name!r}; known: {', '.join(ts) or 'none'} "
                       f"(add one by dropping {name}.md into {user_dir or 'prompts/'}; "
                       "`mine prompts` lists them)")
    return ts[name]


# --------------------------------------------------------------------------------------------
# Sections rendered from the registries
# --------------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def grammar_text() -> str:
    """The formula grammar: the grammar block of :mod:`factors.expr_parse` plus live limits."""
    from factors import expr_parse as fx
    from factors.operators import all_ops
    doc = fx.__doc__ or ""
    m = re.search(r"Grammar.*?::\n\n(.*?)\n\n", doc, re.S)
    block = m.group(1).rstrip() if m else ""
    infix = ", ".join(f"`{op.infix}` = {op.name}" for op in all_ops() if op.infix)
    return (f"```\n{block}\n```\n"
            f"- Infix operators: {infix}; unary minus = neg. No `**`, comparisons, `and`/`or`, "
            "attributes, strings (except the name in `factor(\"<name>\")` / "
            "`model(\"<run id>\")`), lists, keywords or anything else: only fields, numbers, "
            "those two leaves and the operators below called by plain name.\n"
            "- `factor(\"<name>\")` is an accepted leaderboard member (its formula, evaluated "
            "in place): build on mined factors by name.\n"
            "- Windows are positive integer literals counted in trading days (e.g. "
            f"`ts_mean(close, 20)`), at most {fx.MAX_WINDOW}; a constant panel argument is "
            f"written as a float (`5.0`). Nesting depth at most {fx.MAX_DEPTH}, at most "
            f"{fx.MAX_FORMULA_CHARS} characters.\n"
            "- A value at day t may use data up to the close of day t only (operators look "
            "backwards; there is no way to reference the future).\n"
            "- `cs_*` operators work across the stocks of the universe on each day; `ts_*` "
            "operators along each stock's own history.")


def operators_table() -> str:
    """Markdown table of every registered operator: signature, kind, min window, doc."""
    from factors.operators import all_ops
    rows = ["| operator | kind | doc |", "|---|---|---|"]
    for op in all_ops():
        sig = f"`{op.signature}`" + (f" or infix `{op.infix}`" if op.infix else "")
        doc = op.doc + (f" Window >= {op.min_window}." if op.n_windows and op.min_window > 1
                        else "")
        rows.append(f"| {sig} | {op.kind} | {_md_cell(doc)} |")
    return "\n".join(rows)


def fields_table() -> str:
    """Markdown table of the fields with units (first sentence of each doc)."""
    from data.fields import FIELDS
    rows = ["| field | unit | meaning |", "|---|---|---|"]
    for f in FIELDS.values():
        doc = f.doc.split(". ")[0].rstrip(".") + "."
        rows.append(f"| `{f.name}` | {_md_cell(f.unit)} | {_md_cell(doc)} |")
    return "\n".join(rows)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{float(v):+.{digits}f}"


def examples_table(records: Sequence[Any]) -> str:
    """Markdown table of leaderboard members (train/valid RankIC only, never test)."""
    if not records:
        return "(the leaderboard is empty: no examples yet)"
    rows = ["| name | source | formula | train RankIC | valid RankIC |", "|---|---|---|---|---|"]
    for r in records:
        rows.append(f"| {_md_cell(r.name)} | {r.source} | `{_md_cell(r.formula)}` | "
                    f"{_fmt(r.metric('train', 'rank_ic_mean'))} | "
                    f"{_fmt(r.metric('valid', 'rank_ic_mean'))} |")
    return "\n".join(rows)


def render(template: Template, *, n: int, universe: str, horizon: int,
           examples: Sequence[Any] = (), pool_gaps: str | None = None) -> str:
    """Render ``template`` into the first user message.

    Parameters
    ----------
    template : Template
    n : int
        Factors asked for per round (>= 1).
    universe : str
    horizon : int
        Forward-return horizon in trading days (open(t+1) -> open(t+1+h)).
    examples : sequence of FactorRecord
        Current leaderboard members shown as examples.
    pool_gaps : str, optional
        Text of ``{{pool_gaps}}`` (:meth:`mining.pool_gaps.PoolGaps.text`); a note that the
        pool was not examined when omitted. Not appended when the template lacks it.

    Returns
    -------
    str

    Raises
    ------
    LLMError
        On an unknown placeholder (the message names it and lists the known ones).
    """
    raw = template.text()
    values = {"grammar": grammar_text(), "operators": operators_table(),
              "fields": fields_table(), "examples": examples_table(examples),
              "pool_gaps": pool_gaps if pool_gaps is not None else
              "(the pool was not examined for this prompt)",
              "reply_format": REPLY_FORMAT, "n": str(int(n)), "universe": universe,
              "horizon": str(int(horizon))}
    used = set()

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise LLMError(f"prompt template {str(template.path)!r}: unknown placeholder "
                           f"{{{{{key}}}}}; known: {', '.join(PLACEHOLDERS)}")
        used.add(key)
        return values[key]

    out = _PH.sub(sub, raw).rstrip()
    titles = {"grammar": "Formula language", "operators": "Operators", "fields": "Fields",
              "reply_format": "Reply format"}
    for key in _REQUIRED:
        if key not in used:
            out += f"\n\n## {titles[key]}\n\n{values[key]}"
    if "n" not in used:
        out += f"\n\nPropose {int(n)} factors."
    return out + "\n"


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------

class ReplyError(Exception):
    """A reply without a usable factor list; ``kind`` is ``empty``, ``no_json`` or ``bad_json``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.S)


def _json_objects(text: str) -> Iterable[Any]:
    dec = json.JSONDecoder()
    for m in _FENCE.finditer(text):
        try:
            yield json.loads(m.group(1))
        except ValueError:
            pass
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = dec.raw_decode(text, i)
            except ValueError:
                continue
            yield obj


def extract_factors(text: str | None) -> list[Any]:
    """The ``factors`` list of a reply: the whole text as JSON, a fenced block, or the first
    decodable ``{...}`` object holding a ``factors`` list.

    Returns
    -------
    list
        The items as given (each is validated later, one by one).

    Raises
    ------
    ReplyError
        ``empty`` (no text), ``no_json`` (no ``{`` at all: prose), ``bad_json`` (braces or a
        fence but no decodable object with a ``factors`` list).
    """
    if text is None or not text.strip():
        raise ReplyError("empty", "the reply is empty")
    text = text[:MAX_REPLY_CHARS]
    if "{" not in text:
        raise ReplyError("no_json", f"the reply has no JSON object: {text.strip()[:120]!r}")
    seen_obj = False
    for obj in _json_objects(text):
        seen_obj = True
        if isinstance(obj, dict) and isinstance(obj.get("factors"), list):
            return obj["factors"]
    what = ("JSON without a \"factors\" list" if seen_obj
            else "a JSON-like text that does not decode")
    raise ReplyError("bad_json", f"the reply has {what}")


def item_fields(item: Any) -> tuple[Any, str, str, str]:
    """``(formula, name, rationale, direction)`` of one reply item (non-strings -> "")."""
    if not isinstance(item, dict):
        return item, "", "", ""

    def s(key: str, limit: int) -> str:
        v = item.get(key)
        return " ".join(v.split())[:limit] if isinstance(v, str) else ""

    return item.get("formula"), s("name", 80), s("rationale", 2000), s("direction", 16)


# --------------------------------------------------------------------------------------------
# Feedback
# --------------------------------------------------------------------------------------------

def feedback_message(round_no: int, rows: Sequence[dict], *, n: int, train: tuple[str, str],
                     valid: tuple[str, str], reply_problem: str | None = None,
                     pool: str | None = None) -> str:
    """The compact results table sent back after round ``round_no``.

    ``rows`` are dicts with ``name``, ``formula``, ``status`` and optionally ``train``,
    ``valid`` (mean daily RankIC) and ``note``. Only train and valid numbers ever appear here.
    ``pool`` is a one-line pool summary (:meth:`mining.pool_gaps.PoolGaps.summary`) repeated
    after the table.
    """
    head = (f"Round {round_no} results (mean daily RankIC; train {train[0]}..{train[1]}, "
            f"valid {valid[0]}..{valid[1]}).")
    lines = [head]
    if reply_problem:
        lines.append(f"Your previous reply could not be used: {reply_problem}. Answer with the "
                     "JSON object only.")
    if rows:
        lines += ["", "| # | name | formula | status | train | valid | note |",
                  "|---|---|---|---|---|---|---|"]
        for i, r in enumerate(rows, 1):
            lines.append(f"| {i} | {_md_cell(r.get('name', ''))[:40]} | "
                         f"`{_md_cell(r.get('formula', ''))[:200]}` | {r['status']} | "
                         f"{_fmt(r.get('train'))} | {_fmt(r.get('valid'))} | "
                         f"{_md_cell(r.get('note', ''))[:240]} |")
    if pool:
        lines += ["", pool]
    lines += ["", f"Propose {int(n)} new factors that differ from all of the above (fix the "
              "errors, keep what worked, avoid formulas correlated with existing members). "
              "Same JSON format."]
    return "\n".join(lines)

"""LLM producer, offline parts: templates, rendering from the registries, reply parsing, keys."""
import pytest

from data.fields import FIELDS
from factors.operators import all_ops
from mining import prompting
from mining.errors import LLMError
from mining.llm_cache import ChatReply, LLMCache, request_key
from mining.prompting import ReplyError, extract_factors

PACKAGED = {"liquidity", "liquidity_en", "momentum", "volatility", "value", "reversal",
            "volume_price", "free"}


def test_packaged_templates_listed():
    names = {t.name for t in prompting.list_templates(None)}
    assert PACKAGED <= names
    liq = prompting.get_template("liquidity")
    assert "资深量化研究员" in liq.text() and "流动性" in liq.text()   # the original prompt
    with pytest.raises(LLMError, match="unknown prompt template 'nope'.*liquidity"):
        prompting.get_template("nope")


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_render_has_every_operator_field_and_reply_format(name):
    text = prompting.render(prompting.get_template(name), n=6, universe="csi300", horizon=1)
    for op in all_ops():
        assert f"`{op.signature}`" in text
        assert op.doc.split("``")[0].strip()[:20] in text
    for f in FIELDS.values():
        assert f"`{f.name}`" in text and f.unit in text
    assert '"factors"' in text and '"formula"' in text and '"direction"' in text
    assert "{{" not in text and "}}" not in text
    assert "6" in text and "csi300" in text
    assert "expr   := field" in text                      # grammar from factors.expr_parse.s doc


def test_user_template_dropped_in_a_directory(tmp_path):
    (tmp_path / "mine_idea.md").write_text("# My idea\nFind factors about {{universe}}.\n")
    (tmp_path / "momentum.md").write_text("# overridden momentum\n{{n}} factors please\n")
    ts = {t.name: t for t in prompting.list_templates(tmp_path)}
    assert ts["mine_idea"].description == "My idea" and not ts["mine_idea"].packaged
    assert ts["momentum"].description == "overridden momentum"
    text = prompting.render(ts["mine_idea"], n=3, universe="csi500", horizon=5)
    # sections the template did not place are appended
    assert "csi500" in text and "## Operators" in text and "## Fields" in text
    assert "## Reply format" in text and "Propose 3 factors" in text
    (tmp_path / "bad.md").write_text("# bad\n{{test_metrics}}\n")
    with pytest.raises(LLMError, match="unknown placeholder.*test_metrics"):
        prompting.render(prompting.get_template("bad", tmp_path), n=1, universe="x", horizon=1)


def test_examples_table_never_shows_test_numbers():
    from factors.store_records import FactorRecord
    rec = FactorRecord("cs_rank(vol)", "v", "library", "csi300", 1,
                       metrics={"train": {"rank_ic_mean": 0.0123}, "valid": {"rank_ic_mean": -0.0456},
                                "test": {"rank_ic_mean": 0.0987654}})
    text = prompting.examples_table([rec])
    assert "+0.0123" in text and "-0.0456" in text and "0.0987" not in text


GOOD = '{"factors": [{"name": "a", "formula": "cs_rank(vol)", "rationale": "r", "direction": "+"}]}'


@pytest.mark.parametrize("text", [
    GOOD,
    "Sure! Here you go:\n```json\n" + GOOD + "\n```\nHope this helps.",
    "```\n" + GOOD + "\n```",
    "The answer is " + GOOD + " as requested.",
    '{"note": 1} and then ' + GOOD,
])
def test_extract_factors_finds_the_list(text):
    items = extract_factors(text)
    assert items == [{"name": "a", "formula": "cs_rank(vol)", "rationale": "r", "direction": "+"}]


@pytest.mark.parametrize("text,kind", [
    (None, "empty"), ("", "empty"), ("   \n", "empty"),
    ("I think liquidity matters a lot, try turnover.", "no_json"),
    ('```json\n{"factors": [{"name": "x",\n```', "bad_json"),
    ('{"factor": "close"}', "bad_json"),
    ('{"factors": "close"}', "bad_json"),
])
def test_extract_factors_failure_kinds(text, kind):
    with pytest.raises(ReplyError) as e:
        extract_factors(text)
    assert e.value.kind == kind


def test_item_fields_tolerate_junk():
    assert prompting.item_fields("close") == ("close", "", "", "")
    f, n, r, d = prompting.item_fields({"formula": 5, "name": ["x"], "rationale": "a\n b" * 2000})
    assert f == 5 and n == "" and len(r) == 2000 and "\n" not in r


def test_request_key_depends_on_request_only():
    m = [{"role": "user", "content": "hi"}]
    p = {"temperature": 0.7, "max_tokens": 100}
    k = request_key("gpt", m, p)
    assert k == request_key("gpt", [dict(m[0])], dict(reversed(list(p.items()))))
    assert k != request_key("gpt2", m, p)
    assert k != request_key("gpt", m, {**p, "temperature": 0.0})
    assert k != request_key("gpt", [{"role": "user", "content": "hi!"}], p)
    assert len(k) == 64


def test_cache_roundtrip_and_calls(tmp_path):
    path = tmp_path / "c.db"
    with LLMCache(path) as c:
        c.put("k1", "m", [{"role": "user", "content": "x"}], {"t": 1},
              ChatReply(content="hello", prompt_tokens=3, completion_tokens=2))
        c.record_call("run", 0, ChatReply(key="k1"))
        c.record_call("run", 1, ChatReply(key="k2", failure="timeout", error="slow"))
    with LLMCache(path) as c:                      # persisted
        got = c.get("k1")
        assert got.content == "hello" and got.cached and got.prompt_tokens == 3
        assert c.get("k2") is None
        calls = c.calls("run")
        assert [(x["seq"], x["outcome"]) for x in calls] == [(0, "ok"), (1, "timeout")]


def test_cache_from_another_schema_is_a_clear_error(tmp_path):
    import sqlite3
    p = tmp_path / "old.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE responses (key TEXT PRIMARY KEY)")
    con.commit()
    con.close()
    with pytest.raises(LLMError, match="schema version 0.*move it away"):
        LLMCache(p)


@pytest.mark.parametrize("text,sign", [("+", 1), ("positive", 1), (" Long ", 1), ("-", -1),
                                       ("negative", -1), ("", None), ("it depends", None)])
def test_parse_direction(text, sign):
    from mining.llm_loop import parse_direction
    assert parse_direction(text) == sign

"""Every class of malformed formula is rejected with a ParseError naming the token and column."""
from __future__ import annotations

import pytest

from data.errors import AlphamineError
from factors.errors import ParseError
from factors.expr_parse import MAX_DEPTH, MAX_FORMULA_CHARS, MAX_WINDOW, parse
from factors.expr_tree import Call, Field

# (formula, expected token, expected 1-based column, fragment of the message)
CASES = [
    # names and operators
    ("clsoe / open", "clsoe", 1, "did you mean close"),
    ("close / opne", "opne", 9, "did you mean open"),
    ("ts_maen(close, 5)", "ts_maen", 1, "did you mean ts_mean"),
    ("foo(close)", "foo", 1, "unknown operator 'foo'"),
    ("close(5)", "close", 1, "not an operator"),
    ("ts_mean + close", "ts_mean", 1, "must be called"),
    ("__import__('os')", "__import__", 1, "unknown operator '__import__'"),
    ("close + __import__('os').system('ls')", "__import__('os').system", 9, "attribute access"),
    ("np.log(close)", "np.log", 1, "attribute access"),
    ("close.shift", "close.shift", 1, "attribute access"),
    ("close[1]", "close[1]", 1, "subscripts"),
    ("lambda: close", "lambda: close", 1, "lambda"),
    ("close + 'abc'", "'abc'", 9, "string literals"),
    ("close > open", ">", 7, "comparisons"),
    ("close and open", "and", 7, "boolean operators"),
    ("close if open else vol", "close if open else vol", 1, "conditional"),
    ("close ** 2", "**", 7, "power(x, y)"),
    ("(close) % (2)", "%", 9, "infix operators"),
    ("~close", "~", 1, "unary operator"),
    ("not close", "not", 1, "unary operator"),
    ("close * True", "True", 9, "True"),
    ("close * None", "None", 9, "None"),
    ("close * 1j", "1j", 9, "complex"),
    ("close * 1e999", "1e999", 9, "not finite"),
    ("[close, open]", "[close, open]", 1, "lists"),
    ("(x := close)", "x := close", 2, "assignment"),
    # call shapes
    ("ts_mean(close, window=5)", "window=5", 16, "keyword arguments"),
    ("ts_mean(close, **kw)", "**kw", 16, "keyword arguments"),
    ("ts_mean(*close)", "*close", 9, "starred"),
    ("ts_mean(close)", "ts_mean(close)", 1, "takes 2 argument"),
    ("ts_mean(close, 5, 6)", "ts_mean(close, 5, 6)", 1, "got 3"),
    ("ts_corr(close, 5)", "ts_corr(close, 5)", 1, "takes 3 argument"),
    ("cs_rank(close, 5)", "cs_rank(close, 5)", 1, "takes 1 argument"),
    ("abs()", "abs()", 1, "got 0"),
    # windows
    ("ts_mean(close, 5.0)", "5.0", 16, "integer window"),
    ("ts_mean(close, 0)", "0", 16, "positive window"),
    ("ts_mean(close, -5)", "-5", 16, "positive window"),
    ("ts_mean(close, True)", "True", 16, "integer window"),
    ("ts_mean(close, -5.0)", "-5.0", 16, "positive window"),
    ("ts_std(close, 1)", "1", 15, "window >= 2"),
    (f"ts_mean(close, {MAX_WINDOW + 1})", str(MAX_WINDOW + 1), 16, "exceeds"),
    ("ts_mean(close, open)", "open", 16, "got a panel"),
    ("ts_mean(close, 2 + 3)", "2 + 3", 16, "got a panel"),
    ("ts_mean(5, close)", "5", 9, "must be a panel"),
    ("ts_corr(close, -3, 10)", "-3", 16, "must be a panel"),
    # syntax
    ("close +", "", 8, "syntax error"),
    ("ts_mean(close 5)", "close 5", 9, "syntax error"),
    ("close $ 1", "$", 7, "syntax error"),
    ("ts_mean(close, 5", "(", 8, "never closed"),
    ("（close）", "（", 1, "compatibility form of '('"),
    ("close)", ")", 6, "syntax error"),
    ("close\x00", "\\x00", 6, "NUL"),
    # whole-formula rules
    ("1 + 2", "1 + 2", 1, "no field"),
    ("  -3.5", "-3.5", 3, "no field"),
    ("", "", 0, "empty"),
    ("   \n ", "", 0, "empty"),
    ("close + " * 300 + "close", "", MAX_FORMULA_CHARS + 1, "limit is 2000"),
    # leading whitespace and non-ASCII keep columns in characters of the original text
    ("   close + opn", "opn", 12, "unknown name"),
    ("收盘价 + clsoe", "clsoe", 7, "unknown name"),
]


@pytest.mark.parametrize("text, token, col, fragment", CASES,
                         ids=[repr(c[0][:30]) for c in CASES])
def test_parse_error_token_and_col(text: str, token: str, col: int, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text, fields=None if "收盘价" not in text else ["收盘价", "close"])
    err = info.value
    assert isinstance(err, AlphamineError)
    assert err.token == token
    assert err.col == col
    assert fragment in str(err)
    if text and len(text) <= MAX_FORMULA_CHARS:
        assert err.formula == text


def test_nesting_depth_limit() -> None:
    ok = "-" * (MAX_DEPTH - 1) + "close"
    assert parse(ok) is not None
    deep = "-" * MAX_DEPTH + "close"
    with pytest.raises(ParseError) as info:
        parse(deep)
    # the node at level MAX_DEPTH + 1 is the field under the minus signs
    assert info.value.col == MAX_DEPTH + 1 and info.value.token == "close"
    nested = "ts_mean(" * 31 + "close" + ", 5)" * 31
    with pytest.raises(ParseError, match="nested deeper") as info:
        parse(nested)
    assert info.value.col == 1 + 8 * MAX_DEPTH and info.value.token.startswith("ts_mean(close")
    # unary plus adds no depth but thousands of them must still fail cleanly, not crash
    with pytest.raises(ParseError):
        parse("+" * 1990 + "close")


def test_multiline_error_reports_column_on_its_line() -> None:
    with pytest.raises(ParseError) as info:
        parse("ts_mean(\n  clsoe, 5)")
    assert info.value.token == "clsoe" and info.value.col == 3
    assert "line 2" in str(info.value)
    assert parse("ts_mean(\n  close, 5)") == Call("ts_mean", (Field("close"),), (5,))


def test_fields_override_restricts_names() -> None:
    with pytest.raises(ParseError) as info:
        parse("close + vol", fields=["close"])
    assert info.value.token == "vol" and info.value.col == 9
    assert parse("close + 1", fields=["close"]) is not None


def test_non_string_input() -> None:
    with pytest.raises(ParseError, match="must be a str"):
        parse(b"close")  # type: ignore[arg-type]


def test_no_python_evaluation_happens(tmp_path, monkeypatch) -> None:
    # a formula that would create a file if Python ever executed it
    target = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    for text in (f"__import__('pathlib').Path('{target}').touch()",
                 "open('pwned', 'w')", "exec('x=1')", "eval('close')"):
        with pytest.raises(ParseError):
            parse(text)
    assert not target.exists()

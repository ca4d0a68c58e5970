"""What the retrieval finds in an issue's text: frames, paths, error messages, identifiers."""

from __future__ import annotations

from runner.context.terms import Frame, error_fragments, extract_terms, split_identifier

TRACEBACK = '''Parsing fails:

```
Traceback (most recent call last):
  File "/usr/lib/python3/site-packages/tinyparse/core.py", line 88, in parse_header
    raise HeaderError(f"bad header line {line!r}")
tinyparse.errors.HeaderError: bad header line 'X-: 1'
```
'''


def texts(issue: str, *kinds: str) -> list[str]:
    return [t.text for t in extract_terms(issue).of_kind(*kinds)]


def test_python_frames_keep_path_line_and_function() -> None:
    frames = extract_terms(TRACEBACK).frames
    assert frames == (Frame("usr/lib/python3/site-packages/tinyparse/core.py", 88, "parse_header"),)


def test_colon_references_and_js_frames_are_frames_too() -> None:
    frames = extract_terms("see src/app/util.ts:41:7 and lib/io.py:12").frames
    assert Frame("src/app/util.ts", 41) in frames and Frame("lib/io.py", 12) in frames


def test_identifiers_of_every_spelling_are_found() -> None:
    found = texts("The `Config.load_file()` call in TokenParser uses max_depth wrongly via os.path.join",
                  "identifier", "code")
    for name in ("Config.load_file", "load_file", "TokenParser", "max_depth", "join"):
        assert name in found, name


def test_backticked_code_outranks_prose_identifiers() -> None:
    terms = extract_terms("TokenParser breaks; see `render_table`").terms
    order = [t.text for t in terms]
    assert order.index("render_table") < order.index("TokenParser")


def test_error_messages_become_their_literal_fragments() -> None:
    assert error_fragments("bad header line 'X-: 1' in section 12")[0] == "bad header line"
    assert "bad header line" in texts(TRACEBACK, "error")
    assert "HeaderError" in texts(TRACEBACK, "code")


def test_builtin_exceptions_are_not_search_terms() -> None:
    found = texts("ValueError: invalid literal for int() with base 10: 'abc'", "code", "identifier")
    assert "ValueError" not in found
    assert "invalid literal for int() with base" in texts("ValueError: invalid literal for int() with base 10",
                                                          "error")


def test_paths_are_found_and_normalised() -> None:
    terms = extract_terms(r"The bug is in ./pkg/sub/mod.py and C:\code\pkg\other.py")
    assert "pkg/sub/mod.py" in terms.paths


def test_plain_words_skip_stop_words_and_rank_last() -> None:
    terms = extract_terms("The exporter should escape commas when exporting spreadsheet rows").terms
    words = [t.text for t in terms if t.kind == "word"]
    assert "exporter" in words and "should" not in words and "when" not in words
    assert terms[-1].kind == "word"


def test_split_identifier_handles_camel_snake_and_acronyms() -> None:
    assert split_identifier("HTTPTokenParser") == ["http", "token", "parser"]
    assert split_identifier("token_parser-v2") == ["token", "parser", "v2"]


def test_a_huge_body_is_scanned_quickly_and_capped() -> None:
    body = ("word_" + "x" * 10 + " CamelCaseName ") * 100_000
    terms = extract_terms(body)
    assert 0 < len(terms.terms) <= 48

"""Plain-SQL dumps, read line by line as ``psql`` reads them, before ``psql`` sees a byte.

An upload in plain SQL (a bare ``.sql`` file, the ``dump.sql`` of an Odoo zip) is loaded by
``psql``, and ``psql`` runs meta-commands: ``\\! id`` is a shell command. The load runs in a
throw-away container logged in as the environment's role, so even a meta-command could do no
more there than the environment's own Odoo can; this check is what refuses one in the first
place, with the line and the rule, together with the statements a dump has no business
running as its loader: changing role, creating or altering roles, ``ALTER SYSTEM``, ``COPY``
to or from a program or a server file, ``LOAD``, and changing how the rest of the file is read
(``client_encoding``, ``standard_conforming_strings``). The role could not do most of it
anyway; a clear refusal before anything is created beats a permission error half-way.

The lexer follows ``psqlscan.l`` (PostgreSQL 15): quotes (standard, ``E''`` escapes,
``U&''``, ``B''``/``X''``, double-quoted names), dollar quotes, nested ``/* */`` comments,
``--`` comments, parentheses and ``BEGIN ATOMIC`` bodies for where a statement ends, and
``COPY ... FROM stdin`` data up to its ``\\.`` line. What ``psql`` versions could read
differently (a number run into a name, a quote or ``$``; a NUL byte; a ``\\.`` line with more
on it) is refused as unclear rather than guessed. ``COPY`` is accepted only the way
``pg_dump`` writes it, alone on its line, so the data that follows is data for ``psql`` too.
The ``\\restrict KEY``/``\\unrestrict KEY`` pair ``pg_dump`` writes since August 2025 (13.22,
14.19, 15.14, 16.10, 17.6) is the one exception, taken exactly as ``pg_dump`` writes it: one
``\\restrict`` before the first statement, the ``\\unrestrict`` with the same key after the last,
nothing but comments after it. Both exist to stop meta-commands a malicious server smuggles
into a dump, which this check refuses anyway, so both lines are blanked, never passed on: an
older ``psql`` would reject them. A stray, repeated or mismatched one, or a ``\\restrict``
whose ``\\unrestrict`` never comes (a dump cut short), is refused (rule ``restrict_pair``).
The loader sets its own restriction key, so ``psql`` itself refuses any meta-command that got
past this check (a different reading of the file, say).

``guarded`` passes on only complete lines that were checked, so ``psql`` never receives a
byte of a line that is refused; a statement is judged when its ``;`` arrives, which is also
when ``psql`` would send it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, NoReturn

from reconciler.core.errors import OdooOpsError

RULES: Final[Mapping[str, str]] = {
    "meta_command": "psql meta-commands (a backslash outside quotes, e.g. \\! or \\connect) "
    "are refused",
    "role_change": "changing role (SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE, "
    "set_config('role', ...)) is refused: the dump is loaded as the environment's role",
    "role_statement": "role statements (CREATE, ALTER or DROP ROLE, USER or GROUP; GRANT or "
    "REVOKE of a role) are refused",
    "alter_system": "ALTER SYSTEM is refused",
    "copy_form": "COPY is accepted only as pg_dump writes it, alone on its line: "
    "COPY table (columns) FROM stdin; (no PROGRAM, no server file)",
    "database_statement": "CREATE, ALTER and DROP DATABASE are refused: the dump is loaded "
    "into a database the platform made",
    "load_library": "LOAD is refused",
    "session_setting": "changing client_encoding or standard_conforming_strings, and "
    "set_config() of anything but search_path, are refused: they change how the rest of the "
    "file is read",
    "unclear_sql": "text psql versions may read differently (a number run into a name, a "
    "quote or $, a NUL byte, an over-long line) is refused",
    "restrict_pair": "of psql's \\restrict and \\unrestrict, only the pair pg_dump writes is "
    "accepted: \\restrict KEY before the first statement and \\unrestrict with the same KEY "
    "after the last, once each",
}

MAX_LINE: Final = 64 * 1024 * 1024  # outside COPY data; a COPY row streams whatever its size

_IDENT_START = rb"A-Za-z\x80-\xff_"
_IDENT_CONT = rb"A-Za-z\x80-\xff_0-9$"
_DOLLAR_TAG = rb"(?:[" + _IDENT_START + rb"][A-Za-z\x80-\xff_0-9]*)?"
# One token at a time, after the whitespace and -- comments before it. Literals that close on
# their line are one token (possessive, so a doubled quote is never split in two); one that
# goes on past the line only opens, and ``_inside`` follows it.
_TOKEN = re.compile(
    rb"(?:[ \t\r\n\f\v]++|--[^\n]*+)*+(?:"
    rb"(?P<end>\Z)"
    rb"|(?P<block_comment>/\*)"
    rb"|(?P<literal>[eE]'(?:[^'\\]|\\[\s\S]|'')*+'|(?:[bBxXnN]|[uU]&)?'(?:[^']|'')*+')"
    rb"|(?P<name>(?:[uU]&)?\"(?:[^\"]|\"\")*+\")"
    rb"|(?P<dollar_literal>\$(?P<tag>" + _DOLLAR_TAG + rb")\$[\s\S]*?\$(?P=tag)\$)"
    rb"|(?P<escape_string>[eE]')"
    rb"|(?P<string>(?:[bBxXnN]|[uU]&)?')"
    rb"|(?P<quoted_name>(?:[uU]&)?\")"
    rb"|(?P<dollar>\$" + _DOLLAR_TAG + rb"\$)"
    rb"|(?P<param>\$[0-9]+)"
    rb"|(?P<word>[" + _IDENT_START + rb"][" + _IDENT_CONT + rb"]*+)"
    rb"|(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
    rb"|(?P<backslash>\\)"
    rb"|(?P<punct>[;()])"
    rb"|(?P<other>::|[^ \t\r\n\f\v\-/'\"$\\;()A-Za-z\x80-\xff_0-9.:]++|[\s\S])"
    rb")"
)
_OPENS = {
    "escape_string": "escape_string",
    "string": "string",
    "quoted_name": "name",
    "dollar": "dollar",
}
# Of a statement, the tokens its rules read (all of them for the few rules that look further
# than the start); past those, ``_SKIM`` passes over runs of plain tokens in one match.
_KEPT_TOKENS = 6
_KEPT_LONG = 256
_LONG_RULES = {"set", "reset", "grant", "revoke", "copy"}
_SKIM = re.compile(
    rb"(?:[ \t\r\n\f\v]++|--[^\n]*+"
    rb"|[eE]'(?:[^'\\]|\\[\s\S]|'')*+'|(?:[bBxXnN]|[uU]&)?'(?:[^']|'')*+'"
    rb"|(?:[uU]&)?\"(?:[^\"]|\"\")*+\""
    rb"|(?![eEbBxXnN]')(?![uU]&['\"])[" + _IDENT_START + rb"][" + _IDENT_CONT + rb"]*+"
    rb"|(?:[0-9]++(?:\.[0-9]*+)?|\.[0-9]++)(?:[eE][-+]?[0-9]++)?(?![" + _IDENT_CONT + rb"'\"])"
    rb"|[,=+*<>!~@#%^&|`?\[\]{}:]|\.(?![0-9]))*+"
)
_SKIM_CAREFUL = re.compile(rb"(?i)set_config|client_encoding|standard_conforming_strings")
_RUN_INTO = re.compile(rb"[" + _IDENT_CONT + rb"'\"]")
# Inside a literal, what may end it: a doubled quote never does; in E'' a backslash takes the
# next byte along, whatever it is.
_MARKS = {
    "string": re.compile(rb"''|'"),
    "escape_string": re.compile(rb"\\[\s\S]|''|'"),
    "name": re.compile(rb'""|"'),
}
_ENDS = {"string": b"'", "escape_string": b"'", "name": b'"'}
_KEPT = 256  # of a literal, enough for the rules (a set_config name); the rest is only scanned
_COMMENT_MARK = re.compile(rb"/\*|\*+/")
_RESTRICT = re.compile(rb"\\(?P<un>un)?restrict (?P<key>[A-Za-z0-9]+)\r?\n?")
_NAME = rb'(?:[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*+|"(?:[^"\n]|"")++")'
_PG_DUMP_COPY = re.compile(
    rb"[ \t]*COPY[ \t]+" + _NAME + rb"(?:\." + _NAME + rb")?"
    rb"(?:[ \t]*\([ \t]*" + _NAME + rb"(?:[ \t]*,[ \t]*" + _NAME + rb")*[ \t]*\))?"
    rb"[ \t]+FROM[ \t]+stdin[ \t]*;[ \t]*\r?\n?",
    re.IGNORECASE,
)
_COPY_END = (b"\\.\n", b"\\.\r\n", b"\\.")
_BOM = b"\xef\xbb\xbf"
_UTF8 = {"utf8", "unicode", "default"}  # DEFAULT: the loader's own connection setting
_ON = {"on", "true", "yes", "1", "default"}
_SET_CONFIG_ALLOWED = {"search_path"}
_READING_SETTINGS = (b"client_encoding", b"standard_conforming_strings")


class DumpForbidden(OdooOpsError):
    code = "dump_forbidden"
    retryable = False


@dataclass
class _Statement:
    """What the rules look at: the words (names lower-cased, quotes taken off) and strings,
    in order, outside comments."""

    tokens: list[tuple[str, str]] = field(default_factory=list)
    first_line: int = 0
    head: str = ""  # first letters of the first four unquoted words, as psql keeps them
    watch: int = 0  # tokens still to keep after a set_config
    settled: bool = False  # its rules have what they need: the rest may be skimmed

    def may_be_routine(self) -> bool:
        """CREATE [OR REPLACE] FUNCTION/PROCEDURE, or a start that may still become one."""
        head = self.head
        for i, allowed in enumerate(("c", "fpo", "r", "fp")):
            if len(head) <= i:
                return True
            if head[i] not in allowed:
                return False
            if i == 1 and head[1] in "fp":
                return True
        return True

    def words(self) -> list[str]:
        return [text for kind, text in self.tokens if kind == "word"]


class Checker:
    """One plain-SQL stream, fed in chunks; raises ``DumpForbidden`` at the first refusal."""

    def __init__(self, name: str = "the dump") -> None:
        self.name = name
        self.line_no = 0
        self._pending = b""
        self._state = "normal"  # normal, string, escape_string, name, dollar, comment, copy
        self._dollar = b""
        self._depth = 0  # nesting of /* */ comments
        self._parens = 0
        self._begin = 0  # BEGIN ... END depth in CREATE FUNCTION/PROCEDURE (psql's begin_depth)
        self._statement = _Statement()
        self._literal = b""
        self._copy_mid_line = False  # inside a COPY row longer than a chunk
        self._begun = False  # a statement has started: a \restrict comes too late
        self._restrict_key = b""  # of the dump's \restrict
        self._restrict_line = 0  # where it was, 0 before it
        self._unrestricted = False  # its \unrestrict came: only comments may follow

    # ------------------------------------------------------------------------- stream
    def feed(self, data: bytes) -> bytes:
        """The complete, checked lines the data finishes (refused ones are never returned)."""
        buf, at = self._pending + data, 0
        out: list[bytes] = []
        while at < len(buf):
            if self._state == "copy":
                done = self._copy(buf, at, out)
                if done == at:
                    break  # a possible end marker, not complete yet
                at = done
                continue
            end = buf.find(b"\n", at)
            if end < 0:
                if len(buf) - at > MAX_LINE:
                    self.line_no += 1
                    self._refuse("unclear_sql", buf[at : at + 200])
                break
            out.append(self._line(buf[at : end + 1]))
            at = end + 1
        self._pending = buf[at:]
        return b"".join(out)

    def close(self) -> bytes:
        """The last line (psql runs it even without a newline) and the last statement, which
        psql sends at the end of its input even without a ``;``."""
        out = b""
        if self._pending and self._state == "copy":
            out = self._pending
            if not self._copy_mid_line:
                self.line_no += 1
                if out.startswith(b"\\.") and out not in _COPY_END:
                    self._refuse("copy_form", out)
        elif self._pending:
            out = self._line(self._pending)
        self._pending = b""
        if self._state != "copy" and self._statement.tokens:
            self._judge(self._statement, out, first_on_line=False)
        if self._restrict_line and not self._unrestricted:
            self._refuse(
                "restrict_pair",
                b"\\restrict " + self._restrict_key,
                "its \\unrestrict never comes",
                at=self._restrict_line,
                remediation=f"tail -n 5 dump.sql  (pg_dump ends a dump with \\unrestrict "
                f"{self._restrict_key.decode()}: without it the file was cut short or edited); "
                "download or dump it again; nothing was changed",
            )
        return out

    def _copy(self, buf: bytes, at: int, out: list[bytes]) -> int:
        """Pass COPY data on up to the next line that starts with ``\\.``; where it stopped
        (``at`` itself when what is there cannot be judged before more arrives).

        Rows are only counted, never parsed: this is what keeps a large dump fast.
        """
        if self._copy_mid_line:  # the rest of a row that started in an earlier chunk
            end = buf.find(b"\n", at)
            stop = len(buf) if end < 0 else end + 1
            self._copy_mid_line = end < 0
            out.append(buf[at:stop])
            return stop
        if len(buf) - at < 2:
            return at
        if buf.startswith(b"\\.", at):
            end = buf.find(b"\n", at)
            if end < 0:
                if len(buf) - at > 3:  # longer than any end marker: a refused one
                    self.line_no += 1
                    self._refuse("copy_form", buf[at : at + 200])
                return at
            line = buf[at : end + 1]
            self.line_no += 1
            if line not in _COPY_END:
                self._refuse("copy_form", line)
            self._state = "normal"
            out.append(line)
            return end + 1
        marker = buf.find(b"\n\\.", at)
        last = marker if marker >= 0 else buf.rfind(b"\n", at)
        if last < 0:  # a row longer than what has arrived, not an end marker
            self.line_no += 1
            self._copy_mid_line = True
            out.append(buf[at:])
            return len(buf)
        self.line_no += buf.count(b"\n", at, last + 1)
        out.append(buf[at : last + 1])
        return last + 1

    # -------------------------------------------------------------------------- lines
    def _line(self, line: bytes) -> bytes:
        self.line_no += 1
        if b"\x00" in line:
            self._refuse("unclear_sql", line)
        if self._state == "normal" and not self._statement.tokens:
            pair = _RESTRICT.fullmatch(line)
            if pair is not None:
                self._restrict(pair, line)
                return b"\n" if line.endswith(b"\n") else b""  # never passed on to psql
        at, first_on_line, size = 0, True, len(line)
        if self.line_no == 1 and line.startswith(_BOM):
            at = len(_BOM)  # a byte-order mark is no part of the first word
        while at < size:
            if self._state != "normal":
                at = self._inside(line, at)
                continue
            if self._statement.settled:
                skim = _SKIM.match(line, at)
                assert skim is not None  # it matches the empty string too
                if skim.end() > at and not _SKIM_CAREFUL.search(line, at, skim.end()):
                    at = skim.end()
                    if at >= size:
                        break
            token = _TOKEN.match(line, at)
            assert token is not None  # the last alternatives match anything
            kind = token.lastgroup or "other"
            at = token.end()
            if kind == "end":
                break
            if kind == "block_comment":
                self._state, self._depth = "comment", 0
                continue
            if kind == "backslash":
                self._refuse("meta_command", line)
            if not self._statement.tokens:
                if self._unrestricted:
                    self._refuse("restrict_pair", line, "a statement after \\unrestrict")
                self._statement.first_line = self.line_no
                self._begun = True
            if kind in ("literal", "name", "dollar_literal"):
                text = token.group(kind)
                if b"_" in text and any(k in text.lower() for k in _READING_SETTINGS):
                    self._refuse("session_setting", line)
                self._keep("word" if kind == "name" else "string", _content(kind, text))
                continue
            if kind in _OPENS:
                self._state, self._dollar, self._literal = _OPENS[kind], token.group(kind), b""
                continue
            if kind == "word":
                self._word(token.group(kind).decode("utf-8", "replace").lower())
                continue
            if kind in ("number", "param") and _RUN_INTO.match(line, at):
                self._refuse("unclear_sql", line)
            text = token.group(kind)
            if text == b";" and self._parens == 0 and self._begin == 0:
                statement, self._statement = self._statement, _Statement()
                self._judge(statement, line, first_on_line)
                if self._state == "copy":
                    return line
                first_on_line = False
                continue
            if text == b"(":
                self._parens += 1
            elif text == b")":
                self._parens = max(0, self._parens - 1)
            self._keep("punct", text.decode("utf-8", "replace"))
        return line

    def _restrict(self, pair: re.Match[bytes], line: bytes) -> None:
        """Take ``\\restrict KEY`` and ``\\unrestrict KEY`` only as ``pg_dump`` writes them:
        the one before the first statement, the other with the same key after the last."""
        key, first = pair["key"], self._restrict_line
        if pair["un"] is None:
            if first:
                why = f"a second \\restrict (the first: line {first})"
                self._refuse("restrict_pair", line, why)
            if self._begun:
                self._refuse("restrict_pair", line, "a \\restrict after the first statement")
            self._restrict_key, self._restrict_line = key, self.line_no
            return
        if not first:
            why = "an \\unrestrict without a \\restrict before it"
        elif self._unrestricted:
            why = "a second \\unrestrict"
        elif key != self._restrict_key:
            why = f"an \\unrestrict whose key is not the one of the \\restrict on line {first}"
        else:
            self._unrestricted = True
            return
        self._refuse("restrict_pair", line, why)

    def _keep(self, kind: str, text: str) -> None:
        """Remember a token for the rules: the first ones of a statement, and the two after
        every ``set_config`` (its opening parenthesis and the setting's name)."""
        statement = self._statement
        tokens = statement.tokens
        kept = _KEPT_LONG if tokens and tokens[0][1] in _LONG_RULES else _KEPT_TOKENS
        if len(tokens) < kept or statement.watch > 0:
            tokens.append((kind, text))
            statement.watch = max(0, statement.watch - 1)
        if kind == "word" and text == "set_config":
            statement.watch = 2
        statement.settled = (
            len(tokens) >= kept and statement.watch == 0 and not statement.may_be_routine()
        )

    def _inside(self, line: bytes, at: int) -> int:
        """Consume the line inside a quote, a dollar quote or a comment; where it stopped."""
        if self._state == "comment":
            while True:
                mark = _COMMENT_MARK.search(line, at)
                if mark is None:
                    return len(line)
                at = mark.end()
                if mark.group() == b"/*":
                    self._depth += 1
                elif self._depth == 0:
                    self._state = "normal"
                    return at
                else:
                    self._depth -= 1
        end, stop = -1, len(line)
        if self._state == "dollar":
            end = line.find(self._dollar, at)
            if end >= 0:
                stop = end + len(self._dollar)
        else:
            closing = _ENDS[self._state]
            for mark in _MARKS[self._state].finditer(line, at):
                if mark.group() == closing:
                    end, stop = mark.start(), mark.end()
                    break
        piece = line[at : len(line) if end < 0 else end]
        if any(setting in piece.lower() for setting in _READING_SETTINGS):
            self._refuse("session_setting", line)
        self._literal = (self._literal + piece)[:_KEPT]
        if end >= 0:
            text = self._literal.decode("utf-8", "replace")
            if self._state == "name":
                self._keep("word", text.replace('""', '"').lower())
            else:
                self._keep("string", text.replace("''", "'"))
            self._state, self._literal = "normal", b""
        return stop

    def _word(self, word: str) -> None:
        """Track psql's ``begin_depth``: in CREATE [OR REPLACE] FUNCTION/PROCEDURE, a
        ``;`` inside BEGIN ... END (and CASE ... END within it) does not end the statement.

        As psql does, only unquoted words count, and of the first four only those that can
        spell the statement's start.
        """
        statement = self._statement
        self._keep("word", word)
        if len(statement.head) < 4:
            starts = ("create", "function", "procedure", "or", "replace")
            statement.head += word[0] if word in starts else "-"
        head = statement.head.ljust(4, "-")
        routine = head[0] == "c" and (
            head[1] in "fp" or (head[1] == "o" and head[2] == "r" and head[3] in "fp")
        )
        if not routine or self._parens != 0:
            return
        if word == "begin" or (word == "case" and self._begin >= 1):  # CASE also ends in END
            self._begin += 1
        elif word == "end" and self._begin > 0:
            self._begin -= 1

    # -------------------------------------------------------------------------- rules
    def _judge(self, statement: _Statement, line: bytes, first_on_line: bool = True) -> None:
        words = statement.words()
        if not words:
            return
        first, rest = words[0], words[1:]
        rule = _rule(first, rest, statement)
        if rule is None and first == "copy":
            alone = (
                first_on_line
                and statement.first_line == self.line_no
                and _PG_DUMP_COPY.fullmatch(line)
            )
            if not alone:
                rule = "copy_form"
            else:
                self._state = "copy"
        if rule is not None:
            self._refuse(rule, line)

    def _refuse(
        self, rule: str, line: bytes, why: str = "", *, at: int = 0, remediation: str = ""
    ) -> NoReturn:
        """Refuse the dump, showing ``line`` as line number ``at`` (by default the one being
        read) of the file."""
        at = at or self.line_no
        shown = line.decode("utf-8", "replace").strip()
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        because = f"{why}; " if why else ""
        raise DumpForbidden(
            f"{self.name}, line {at}: {because}{RULES[rule]} [rule {rule}]: {shown}",
            remediation=remediation
            or f"sed -n '{at}p' dump.sql  (shows the line); remove it, or "
            "dump the database again with: pg_dump --format=plain --no-owner --no-acl DBNAME "
            "> dump.sql; nothing was changed",
        )


def _content(kind: str | None, token: bytes) -> str:
    """A literal's or a quoted name's text, without its quotes (only kept for the rules)."""
    text = token[:_KEPT].decode("utf-8", "replace")
    if kind == "name":
        return text[text.index('"') + 1 : -1].replace('""', '"').lower()
    if kind == "dollar_literal":
        return text
    return text[text.index("'") + 1 : -1].replace("''", "'")


def _rule(first: str, rest: list[str], statement: _Statement) -> str | None:
    """The rule a complete statement breaks, if any (``COPY`` is judged by the caller)."""
    nxt = rest[0] if rest else ""
    if first == "set":
        return _set_rule(rest, statement)
    if first == "reset" and (
        nxt in ("role", "session_authorization") or rest[:2] == ["session", "authorization"]
    ):
        return "role_change"
    if first in ("create", "alter", "drop"):
        if nxt in ("role", "user", "group") and (rest[1:2] != ["mapping"]):
            return "role_statement"
        if nxt == "database":
            return "database_statement"
        if first == "alter" and nxt == "system":
            return "alter_system"
    if first in ("grant", "revoke") and "on" not in rest:
        return "role_statement"
    if first == "load":
        return "load_library"
    if first == "copy" and "program" in rest:
        return "copy_form"
    return _set_config_rule(statement)


def _set_rule(rest: list[str], statement: _Statement) -> str | None:
    # SET [SESSION | LOCAL] ROLE ..., SET [SESSION | LOCAL] SESSION AUTHORIZATION ...
    names = rest[1:] if rest[:1] in (["session"], ["local"]) else rest
    name = names[0] if names else ""
    if name in ("role", "session_authorization", "authorization") or names[:2] == [
        "session",
        "authorization",
    ]:
        return "role_change"
    value = _value(statement)
    if name in ("client_encoding", "names"):
        return None if value.replace("-", "").replace("_", "") in _UTF8 else "session_setting"
    if name == "standard_conforming_strings":
        return None if value in _ON else "session_setting"
    return None


def _value(statement: _Statement) -> str:
    """The value of ``SET name = value``/``SET name TO value``: the last word or string."""
    tail = [text for kind, text in statement.tokens[2:] if kind in ("word", "string")]
    values = [t for t in tail if t not in ("to", "session", "local")]
    return values[-1].lower() if values else ""


def _set_config_rule(statement: _Statement) -> str | None:
    tokens = statement.tokens
    for i, (kind, text) in enumerate(tokens):
        if kind != "word" or text != "set_config":
            continue
        following = tokens[i + 1 : i + 3]
        if len(following) < 2 or following[0] != ("punct", "(") or following[1][0] != "string":
            return "session_setting"
        setting = following[1][1].lower()
        if setting in ("role", "session_authorization"):
            return "role_change"
        if setting not in _SET_CONFIG_ALLOWED:
            return "session_setting"
    return None


def guarded(chunks: Iterable[bytes], name: str = "the dump") -> Iterator[bytes]:
    """The stream, checked: complete lines only, each passed on once it was judged."""
    checker = Checker(name)
    for chunk in chunks:
        if out := checker.feed(chunk):
            yield out
    if tail := checker.close():
        yield tail


def check(chunks: Iterable[bytes], name: str = "the dump") -> int:
    """Read the whole stream and refuse it at its first forbidden line; the lines read."""
    checker = Checker(name)
    for chunk in chunks:
        checker.feed(chunk)
    checker.close()
    return checker.line_no


__all__ = ["RULES", "Checker", "DumpForbidden", "check", "guarded"]

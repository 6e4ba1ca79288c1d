"""The one grammar: `[/marvin] <group> <verb> <args> [--opt value|--opt=value]`.

Any text yields either a typed command or a UsageError with a message a person can act on;
nothing else escapes (a hypothesis property in the tests holds us to that).
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass

from pydantic import ValidationError

from marvin.spec import CommandModel, CommandSpec, Registry

# Slack and phones turn straight quotes into curly ones; people mean the same thing.
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "„": "“"}
_CLOSERS = {'"': {'"', "”"}, "'": {"'", "’"}, "“": {"”", '"'}, "‘": {"’", "'"}, "„": {"“", '"'}}


class UsageError(Exception):
    def __init__(self, message: str, usage: str | None = None) -> None:
        self.message = message
        self.usage = usage
        super().__init__(message)

    def text(self) -> str:
        return self.message + (f"\nUsage:\n{self.usage}" if self.usage else "")


@dataclass(frozen=True)
class Token:
    text: str
    # The word began with a quote: a literal, never a command name or an option. A quote
    # after `--opt=` only groups the value; the token is still that option.
    quoted: bool = False


@dataclass(frozen=True)
class Parsed:
    spec: CommandSpec
    command: CommandModel


def _check_characters(text: str) -> None:
    for ch in text:
        if ch in "\t\n\r":
            continue
        category = unicodedata.category(ch)
        # Cc: control characters; Cf: invisible formatting such as bidi overrides, which can
        # make a command read differently from what runs.
        if category in ("Cc", "Cf"):
            raise UsageError(
                f"The command contains a control or invisible character (U+{ord(ch):04X}); "
                "retype it as plain text."
            )


def tokenize(text: str, max_chars: int = 4000) -> list[Token]:
    if len(text) > max_chars:
        raise UsageError(f"The command is {len(text)} characters long; the limit is {max_chars}.")
    _check_characters(text)
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        buf: list[str] = []
        quoted = False
        # A quote opens only at the start of a word or right after `--opt=`, so an
        # apostrophe inside a word ("I'm away") stays a letter.
        while i < n and not text[i].isspace():
            ch = text[i]
            at_start = not buf or (buf[0:2] == ["-", "-"] and buf[-1] == "=")
            if ch in _QUOTES and at_start:
                closers = _CLOSERS[ch]
                j = i + 1
                while j < n and text[j] not in closers:
                    j += 1
                if j >= n:
                    raise UsageError(
                        f"Unbalanced quote {ch} at character {i + 1}: close it or leave it out."
                    )
                quoted = quoted or not buf
                buf.extend(text[i + 1 : j])
                i = j + 1
                continue
            buf.append(ch)
            i += 1
        tokens.append(Token("".join(buf), quoted))
    return tokens


def _suggest(word: str, choices: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean `{prefix}{close[0]}`?" if close else ""


def _pick_spec(words: list[Token], registry: Registry) -> tuple[CommandSpec, list[Token]]:
    if not words or words[0].quoted or words[0].text.startswith("--"):
        raise UsageError("Tell me what to do.", registry.overview())
    group = words[0].text.lower()
    if group not in registry.group_summaries:
        shown = group if len(group) <= 40 else group[:40] + "…"
        raise UsageError(
            f"I don't know the command `{shown}`.{_suggest(group, registry.groups())} Try `help`."
        )
    specs = registry.in_group(group)
    verbs = {s.verb: s for s in specs if s.verb}
    if len(words) > 1 and not words[1].quoted and words[1].text.lower() in verbs:
        return verbs[words[1].text.lower()], words[2:]
    default = registry.find(group, None)
    if default is not None:
        return default, words[1:]
    if len(words) == 1:
        raise UsageError(f"`{group}` needs a subcommand.", registry.group_help(group))
    verb = words[1].text
    shown = verb if len(verb) <= 40 else verb[:40] + "…"
    raise UsageError(
        f"`{group}` has no subcommand `{shown}`.{_suggest(verb.lower(), list(verbs))}",
        registry.group_help(group),
    )


def _bind(spec: CommandSpec, rest: list[Token]) -> dict[str, object]:
    values: dict[str, object] = {}
    positional: list[str] = []
    only_positional = False
    i = 0
    while i < len(rest):
        tok = rest[i]
        i += 1
        if only_positional or tok.quoted or not tok.text.startswith("--"):
            positional.append(tok.text)
            continue
        if tok.text == "--":
            only_positional = True
            continue
        name, eq, inline = tok.text[2:].partition("=")
        opt = spec.option(name.lower())
        if opt is None:
            known = [o.name for o in spec.opts]
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise UsageError(
                f"`{spec.name}` has no option `--{shown}`.{_suggest(name.lower(), known, '--')}",
                spec.help_text(),
            )
        if opt.field in values:
            raise UsageError(f"`--{opt.name}` is given twice.", spec.help_text())
        if opt.metavar is None:
            if eq:
                raise UsageError(f"`--{opt.name}` is a switch and takes no value.")
            values[opt.field] = True
            continue
        if eq:
            value = inline
        elif i < len(rest) and (rest[i].quoted or not rest[i].text.startswith("--")):
            value = rest[i].text
            i += 1
        else:
            raise UsageError(f"`--{opt.name}` needs a value: `--{opt.name} <{opt.metavar}>`.")
        values[opt.field] = value
    for arg in spec.args:
        if arg.rest:
            if positional:
                values[arg.name] = " ".join(positional)
                positional = []
        elif positional:
            values[arg.name] = positional.pop(0)
        elif arg.required:
            raise UsageError(f"`{spec.name}` needs `<{arg.name}>`.", spec.help_text())
    if positional:
        extra = " ".join(positional)
        extra = extra if len(extra) <= 60 else extra[:60] + "…"
        raise UsageError(f"I don't know what to do with `{extra}`.", spec.help_text())
    return values


def _explain(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        field = ".".join(str(p) for p in err["loc"])
        messages.append(f"{field}: {msg}" if field else msg)
    return "; ".join(messages)


def parse(text: str, registry: Registry, max_chars: int = 4000) -> Parsed:
    tokens = tokenize(text, max_chars)
    if tokens and not tokens[0].quoted and tokens[0].text.startswith("/"):
        tokens = tokens[1:]  # the slash command's own name, typed in the shell
    spec, rest = _pick_spec(tokens, registry)
    values = _bind(spec, rest)
    try:
        command = spec.model.model_validate(values)
    except ValidationError as exc:
        raise UsageError(_explain(exc), spec.help_text()) from None
    return Parsed(spec=spec, command=command)

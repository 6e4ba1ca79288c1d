"""The one grammar: `[/marvin] <group> <verb> <args> [--opt value|--opt=value]`.

Any text yields either a typed command or a UsageError with a message a person can act on;
nothing else escapes (a hypothesis property in the tests holds us to that).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

import annotated_types
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from marvin.commands.on_environment import CONTEXT_KEY as ENVIRONMENTS
from marvin.spec import CommandModel, CommandSpec, Registry, short

# Slack and phones turn straight quotes into curly ones; people mean the same thing.
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "„": "“"}
_CLOSERS = {'"': {'"', "”"}, "'": {"'", "’"}, "“": {"”", '"'}, "‘": {"’", "'"}, "„": {"“", '"'}}
# En and em dashes: what `--` becomes on the way through Slack, macOS and phones.
_DASHES = "\u2013\u2014"
_HYPHENS = "-" + _DASHES


class UsageError(Exception):
    """A command that can't be run as typed: `message` is one sentence that says why and what
    to do; `usage` one line of how the command goes; `topic` what `help` explains it ("" for
    the list of every command)."""

    def __init__(self, message: str, usage: str | None = None, topic: str | None = None) -> None:
        self.message = message
        self.usage = usage
        self.topic = topic
        super().__init__(message)

    def text(self) -> str:
        parts = [self.message]
        pointer: str | None = None
        if self.topic is not None:
            pointer = (
                f"`help {self.topic}` explains it" if self.topic else "`help` lists every command"
            )
        if self.usage and "\n" in self.usage:  # the overview, for an empty command
            parts.append(self.usage)
        elif self.usage:
            parts.append(f"Usage: {self.usage}" + (f" ({pointer})." if pointer else ""))
        elif pointer:
            parts.append(pointer + ".")
        return "\n".join(parts)


@dataclass(frozen=True)
class Token:
    text: str
    # The word began with a quote: a literal, never a command name or an option. A quote
    # after `--opt=` only groups the value; the token is still that option.
    quoted: bool = False
    # Where it stands in the text typed: [start, end).
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


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


def _long_dash(text: str, i: int) -> int:
    """How many characters at `i` stand for `--`: an en or em dash (which Slack, macOS and
    phones put in place of a typed `--`), alone or beside a hyphen, right before a letter."""
    j = i
    while j < len(text) and j - i < 2 and text[j] in _HYPHENS:
        j += 1
    run = text[i:j]
    if any(ch in _DASHES for ch in run) and j < len(text) and text[j].isalpha():
        return j - i
    return 0


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
        start = i
        dash = _long_dash(text, i)
        if dash:
            buf.extend("--")
            i += dash
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
        tokens.append(Token("".join(buf), quoted, start, i))
    return tokens


def without_options(text: str, names: Iterable[str]) -> str:
    """`text` with the switches `--<name>` taken out where they are options, never from
    inside a quoted value; the rest exactly as typed."""
    wanted = {f"--{name}" for name in names}
    cut = [t for t in tokenize(text, len(text)) if not t.quoted and t.text.lower() in wanted]
    kept, at = [], 0
    for token in cut:
        kept.append(text[at : token.start].rstrip())  # with the space that set it apart
        at = token.end
    kept.append(text[at:])
    return "".join(kept).strip()


def _is_word(token: Token) -> bool:
    """A bare word: not quoted, not an option."""
    return not token.quoted and not token.text.startswith("--")


def _usage(spec: CommandSpec, registry: Registry) -> str:
    """One line of how it goes; for a group's bare command (`status`) the whole group's."""
    if spec.verb is None and any(s.verb for s in registry.in_group(spec.group)):
        return registry.group_usage(spec.group)
    return f"`{spec.brief_usage()}`"


def _refuse(message: str, spec: CommandSpec, registry: Registry) -> UsageError:
    topic = spec.group if spec.verb is None else spec.name
    return UsageError(message, _usage(spec, registry), topic)


def _pick_spec(words: list[Token], registry: Registry) -> tuple[CommandSpec, list[Token]]:
    if not words:
        raise UsageError("Tell me what to do.", registry.overview())
    if not _is_word(words[0]):
        raise UsageError("Tell me what to do: start with a command.", topic="")
    group = words[0].text.lower()
    if group not in registry.group_summaries:
        typed = [w.text for w in words[:2] if _is_word(w)]
        near = registry.closest(typed)
        hint = f" Did you mean `{near}`?" if near else ""
        raise UsageError(f"I don't know the command `{short(group)}`.{hint}", topic="")
    verbs = {s.verb: s for s in registry.in_group(group) if s.verb}
    second = words[1] if len(words) > 1 else None
    if second is not None and _is_word(second) and second.text.lower() in verbs:
        return verbs[second.text.lower()], words[2:]
    default = registry.find(group, None)
    # A bare word after a group that has subcommands is a subcommand, unless the group's
    # own command takes words (`help feature`).
    if default is not None and (
        not verbs or default.args or second is None or not _is_word(second)
    ):
        return default, words[1:]
    usage = registry.group_usage(group)
    if second is None:
        raise UsageError(f"`{group}` needs a subcommand.", usage, group)
    near = registry.closest_in_group(group, second.text)
    hint = f" Did you mean `{near}`?" if near else ""
    raise UsageError(f"`{group}` has no subcommand `{short(second.text)}`.{hint}", usage, group)


def _unknown_option(spec: CommandSpec, name: str, registry: Registry) -> UsageError:
    known = [o.name for o in spec.opts]
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    if close:
        hint = f" Did you mean `--{close[0]}`?"
    else:
        elsewhere = [
            s.name for s in registry.in_group(spec.group) if s.option(name.lower()) is not None
        ]
        hint = f" `{elsewhere[0]}` takes it." if elsewhere else ""
    return _refuse(f"`{spec.name}` has no option `--{short(name)}`.{hint}", spec, registry)


def _bind(spec: CommandSpec, rest: list[Token], registry: Registry) -> dict[str, object]:
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
            raise _unknown_option(spec, name, registry)
        if opt.field in values:
            raise _refuse(f"`--{opt.name}` is given twice.", spec, registry)
        if opt.metavar is None:
            if eq:
                raise _refuse(f"`--{opt.name}` is a switch and takes no value.", spec, registry)
            values[opt.field] = True
            continue
        if eq:
            value = inline
        elif i < len(rest) and (rest[i].quoted or not rest[i].text.startswith("--")):
            value = rest[i].text
            i += 1
        else:
            value = ""
        if not value.strip():
            raise _refuse(
                f"`--{opt.name}` needs a value: `--{opt.name} <{opt.metavar}>`.", spec, registry
            )
        values[opt.field] = value
    for arg in spec.args:
        if positional and not all(word.strip() for word in positional[: None if arg.rest else 1]):
            fill = "fill it in" if arg.required else "fill it in or leave it out"
            raise _refuse(f"`<{arg.name}>` is empty: {fill}.", spec, registry)
        if arg.rest:
            if positional:
                values[arg.name] = " ".join(positional)
                positional = []
        elif positional:
            values[arg.name] = positional.pop(0)
        elif arg.required:
            raise _refuse(f"`{spec.name}` needs `<{arg.name}>`.", spec, registry)
    if positional:
        extra = short(" ".join(positional), 60)
        raise _refuse(f"I don't know what to do with `{extra}`.", spec, registry)
    return values


# --- validation errors, as sentences ---------------------------------------------------------


def _sentence(text: str) -> str:
    text = text.strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def _bounds(model: type[CommandModel], field: str) -> str:
    """The range a number must be in, from the field's own constraints: " from 1 to 100"."""
    info = model.model_fields.get(field)
    low: object = None
    high: object = None
    low_open = high_open = False
    for meta in info.metadata if info is not None else ():
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            low, low_open = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
        elif isinstance(meta, annotated_types.Lt):
            high, high_open = meta.lt, True
    if low is not None and high is not None and not (low_open or high_open):
        return f" from {low} to {high}"
    parts = []
    if low is not None:
        parts.append(f"above {low}" if low_open else f"of at least {low}")
    if high is not None:
        parts.append(f"below {high}" if high_open else f"of at most {high}")
    return " " + " and ".join(parts) if parts else ""


def _shown_input(value: object) -> str:
    return f"`{short(str(value), 40)}`"


def _explain_one(err: ErrorDetails, spec: CommandSpec) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "value_error":
        # Our own validators' messages are written for people already.
        return _sentence(msg.removeprefix("Value error, "))
    field = str(err["loc"][0]) if err["loc"] else None
    opt = next((o for o in spec.opts if o.field == field), None)
    arg = next((a for a in spec.args if a.name == field), None)
    if opt is not None:
        what, noun = f"--{opt.name}", opt.metavar or "value"
    elif arg is not None:
        what, noun = f"<{arg.name}>", arg.name
    else:
        what, noun = spec.name, "value"
    ctx = err.get("ctx") or {}
    given = err.get("input")
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        if least == 1:
            return f"`{what}` needs a {noun}."
        return f"`{what}` needs a {noun} of at least {least} characters."
    if kind == "string_too_long":
        return (
            f"`{what}` takes a {noun} of at most {ctx.get('max_length')} characters; "
            f"this one has {len(str(given))}."
        )
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return (
            f"`{what}` takes a whole number{_bounds(spec.model, field or '')}; "
            f"{_shown_input(given)} isn't one."
        )
    if kind in ("float_parsing", "float_type", "decimal_parsing", "decimal_type"):
        return (
            f"`{what}` takes a number{_bounds(spec.model, field or '')}; "
            f"{_shown_input(given)} isn't one."
        )
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return (
            f"`{what}` takes a number{_bounds(spec.model, field or '')}; "
            f"{_shown_input(given)} is out of range."
        )
    if kind in ("literal_error", "enum"):
        return f"`{what}` takes {ctx.get('expected', 'one of the listed values')}."
    if kind == "missing":
        return f"`{spec.name}` needs `{what}`."
    # Anything else: pydantic's words, but about the option, never a field's name.
    for prefix in ("Input ", "Value "):
        if msg.startswith(prefix):
            return _sentence(f"`{what}` {msg.removeprefix(prefix)}")
    return _sentence(f"`{what}`: {msg[:1].lower()}{msg[1:]}")


def _explain(exc: ValidationError, spec: CommandSpec) -> str:
    sentences = list(dict.fromkeys(_explain_one(err, spec) for err in exc.errors()))
    return " ".join(sentences)


# --- the whole command --------------------------------------------------------------------------


def _strip_prefix(tokens: list[Token], registry: Registry) -> list[Token]:
    """Drop what stands before the command: the slash command's own name typed in the shell
    (`/marvin`, `/chatops`), and GitLab ChatOps' `run`."""
    if tokens and not tokens[0].quoted and tokens[0].text.startswith("/"):
        tokens = tokens[1:]
    if (
        tokens
        and not tokens[0].quoted
        and tokens[0].text.lower() == "run"
        and "run" not in registry.group_summaries
    ):
        tokens = tokens[1:]
    return tokens


def parse(text: str, registry: Registry, max_chars: int = 4000) -> Parsed:
    tokens = _strip_prefix(tokenize(text, max_chars), registry)
    if len(tokens) == 1 and tokens[0].quoted and tokens[0].text.strip():
        # The whole command in quotes (`"feature list"`), as people copy it from a page.
        tokens = _strip_prefix(tokenize(tokens[0].text, max_chars), registry)
    spec, rest = _pick_spec(tokens, registry)
    values = _bind(spec, rest, registry)
    try:
        command = spec.model.model_validate(values, context={ENVIRONMENTS: registry.environments})
    except ValidationError as exc:
        raise _refuse(_explain(exc, spec), spec, registry) from None
    return Parsed(spec=spec, command=command)

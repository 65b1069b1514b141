"""A backend's declared options (``Backend.options``): parsing, checking, describing.

One parser for every way an option arrives, so the command line and the Python API agree:

- ``parse_options(backend, ["dimensions=256"])``: ``KEY=VALUE`` strings (``embed -O``);
- ``check_options(backend, {"dimensions": 256})``: Python values (``embctl.load(ref, **kw)``);
- ``load_options(backend, pairs, flags=..., shared=...)``: what ``Backend.load`` receives.

Both return the typed values of the options given, and raise a one-line ``UsageError`` naming
the valid options and their types for an unknown key or a bad value.  No click here: the CLI
wraps these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from embctl.backends import Backend, Option
from embctl.errors import UsageError

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def type_name(option: Option) -> str:
    """How the value is written: ``int``, ``bool``, ``a|b`` (choices), or the metavar."""
    if option.metavar:
        return option.metavar
    if option.choices:
        return "|".join(option.choices)
    return getattr(option.type, "__name__", "value")


def _valid(backend: Backend) -> str:
    if not backend.options:
        return f"backend {backend.name!r} takes no options"
    listed = ", ".join(f"{o.name} ({type_name(o)})" for o in backend.options)
    return f"{backend.name} options: {listed}"


def _find(backend: Backend, key: str) -> Option:
    name = key.strip().replace("-", "_")
    for option in backend.options:
        if option.name == name:
            return option
    raise UsageError(f"unknown option {key!r}; {_valid(backend)}")


def _bad(backend: Backend, option: Option, value: Any, why: str = "") -> UsageError:
    reason = why or f"expected {type_name(option)}"
    return UsageError(f"{backend.name} option {option.name}: {reason}, got {value!r}")


def parse_value(backend: Backend, option: Option, text: str) -> Any:
    """The typed value of ``text`` for ``option``; a one-line UsageError when it is bad."""
    if option.type is bool:
        word = text.strip().lower()
        if word not in TRUE + FALSE:
            raise _bad(backend, option, text, "expected true or false")
        return word in TRUE
    builtin = option.type in (int, float, str)
    try:
        value = option.type(text.strip() if option.type in (int, float) else text)
    except (TypeError, ValueError) as exc:
        if builtin:
            raise _bad(backend, option, text) from None
        # A parser's message says what is wrong, and may leave the value out on purpose (a
        # URL with credentials in it).
        raise UsageError(f"{backend.name} option {option.name}: {exc}") from None
    return _checked(backend, option, value)


def _checked(backend: Backend, option: Option, value: Any) -> Any:
    if option.choices and value not in option.choices:
        raise _bad(backend, option, value, f"expected one of {', '.join(option.choices)}")
    if option.minimum is not None and isinstance(value, (int, float)) \
            and value < option.minimum:
        raise _bad(backend, option, value, f"must be at least {option.minimum:g}")
    return value


def parse_options(backend: Backend, pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings into ``{name: typed value}``; a later key wins."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"option {pair!r}: expected KEY=VALUE; {_valid(backend)}")
        option = _find(backend, key)
        values[option.name] = parse_value(backend, option, text)
    return values


def check_options(backend: Backend, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check Python values (``embctl.load(ref, dimensions=256)``): a string is parsed as on
    the command line, any other value must have the option's type.  None means "not given"
    and is dropped."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        option = _find(backend, key)
        if value is None:
            continue
        if isinstance(value, str):
            checked[option.name] = parse_value(backend, option, value)
            continue
        if not _is_typed(option.type, value):
            raise _bad(backend, option, value)
        value = float(value) if option.type is float else value
        checked[option.name] = _checked(backend, option, value)
    return checked


def load_options(backend: Backend, pairs: Sequence[str] = (), *,
                 given: Mapping[str, Any] | None = None,
                 flags: Mapping[str, Any] | None = None,
                 shared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``Backend.load`` receives: every declared option, typed, with its default.

    ``pairs``: ``KEY=VALUE`` strings (``embed -O``); ``given``: Python values
    (``embctl.load(ref, dimensions=256)``).  ``flags``: options given through a
    command's own flag (``--dimensions 256``); a flag the backend does not declare is refused
    with one line naming it, a ``-O`` of the same option wins.  ``shared``: the core's own
    settings (``--batch-size``, ``--concurrency``) that a backend may also declare to learn
    them; passed on only to those that do.
    """
    values = parse_options(backend, pairs)
    values.update(check_options(backend, given or {}))
    for name, value in (flags or {}).items():
        if value is None or name in values:
            continue
        flag = "--" + name.replace("_", "-")
        if not any(o.name == name for o in backend.options):
            cut = name == "dimensions" and any(o.name == "truncate_dim" for o in backend.options)
            hint = ("; to cut the vectors to N dimensions on purpose (Matryoshka models): "
                    "--truncate-dim N") if cut else ""
            raise UsageError(f"{flag} does not apply to the {backend.name} backend; "
                             f"{_valid(backend)}{hint}")
        try:
            values.update(check_options(backend, {name: value}))
        except UsageError as exc:  # name the flag the user typed, not the option
            raise UsageError(_as_flag(flag, backend, name, str(exc))) from None
    for name, value in (shared or {}).items():
        if value is not None and name not in values and any(
                o.name == name for o in backend.options):
            values.update(check_options(backend, {name: value}))
    return with_defaults(backend, values)


def parse_pull_options(backend: Backend, pairs: Sequence[str],
                       flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The backend's pull options from ``-O KEY=VALUE`` and the flags backends declare for
    them (``--variant``): only those it declares in ``pull_options`` (the others change the
    vectors, not the files)."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    if not pairs and not flags:
        return {}
    names = set(backend.pull_options)
    if not names:
        flag = "--" + next(iter(flags)).replace("_", "-") if flags else "-O"
        raise UsageError(f"{flag}: the {backend.name} backend takes no pull options")
    for pair in pairs:
        key = pair.partition("=")[0].strip().replace("-", "_")
        if key and key not in names:
            raise UsageError(f"-O {pair}: not a pull option of the {backend.name} backend "
                             f"(pull options: {', '.join(sorted(names))})")
    values = load_options(backend, pairs, flags=flags)
    return {k: v for k, v in values.items() if k in names}


def _as_flag(flag: str, backend: Backend, name: str, message: str) -> str:
    """``st option truncate_dim: expected int...`` -> ``--truncate-dim: expected int...``."""
    rest = message.removeprefix(f"{backend.name} option {name}: ")
    return f"{flag}: {rest}" if rest.startswith(("expected", "must")) else f"{flag} {rest}"


def _is_typed(kind: Any, value: Any) -> bool:
    """Whether a Python value (not a string) fits an option of type ``kind``; a parser's
    options take what its backend's load accepts."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return kind is not str


def with_defaults(backend: Backend, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option: its value in ``values``, else its default."""
    return {o.name: values.get(o.name, o.default) for o in backend.options}


def describe(option: Option) -> dict[str, Any]:
    """JSON-able, for ``embctl plugins --json``."""
    default = option.default
    if not (default is None or isinstance(default, (bool, int, float, str))):
        default = str(default)
    return {"name": option.name, "type": type_name(option), "default": default,
            "help": option.help, "choices": list(option.choices) or None}


def option_line(option: Option) -> tuple[str, str]:
    """``("name=TYPE", "help [default: x]")`` for listings."""
    text = option.help
    if option.default is not None:
        default = str(option.default).lower() if isinstance(option.default, bool) \
            else option.default
        text = f"{text} [default: {default}]".strip()
    shown = type_name(option)
    if not (option.metavar or option.choices):
        shown = "TEXT" if option.type is str else shown.upper()
    return f"{option.name}={shown}", text


def format_backend_options(backends: Iterable[Backend] | None = None) -> str:
    """Every backend's options, one per line, grouped by backend (for ``embed --help``)."""
    if backends is None:
        from embctl.registry import backends as registered

        backends = registered().values()
    lines: list[str] = []
    for backend in backends:
        if not backend.options:
            continue
        rows = [option_line(o) for o in backend.options]
        width = max(len(left) for left, _ in rows)
        lines.append(f"{backend.name}:")
        lines += [f"  {left.ljust(width)}  {right}".rstrip() for left, right in rows]
    return "\n".join(lines)

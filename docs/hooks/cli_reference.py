"""MkDocs hook: writes the command-line reference from `audiotag`'s own argparse parser.

A page containing the line ``<!-- cli-reference -->`` gets, in its place, one section per command: its
description, usage line and a table of its options, all read from ``pipeline.cli.build_parser()``. The
reference therefore cannot drift from the program.
"""

from __future__ import annotations

import argparse
import html
from typing import Any

MARKER = "<!-- cli-reference -->"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order `--help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _cell(text: str) -> str:
    """Text made safe for a Markdown table cell."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _value(action: argparse.Action) -> str:
    """What an option takes: its choices, its metavar, or nothing for a flag."""
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " \\| ".join(f"`{choice}`" for choice in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    return f"`{metavar}`".replace("|", "\\|")


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The option's help with %(default)s and friends expanded, plus its default when the help omits it."""
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    default = action.default
    shows_default = (
        action.nargs != 0
        and default not in (None, argparse.SUPPRESS, [], ())
        and "default" not in text
        and action.option_strings
    )
    if shows_default:
        text = f"{text} (default: `{default}`)".strip()
    return _cell(text)


def _command_section(name: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `audiotag {name}`", ""]
    if summary:
        lines += [f"*{_cell(summary)}*", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS and not _is_help(a)]
        if not actions:
            continue
        title = "Arguments" if group.title == "positional arguments" else (group.title or "Options")
        if title == "options":
            title = "Options"
        lines += [f"**{title[0].upper() + title[1:]}**", ""]
        if group.description:
            lines += [" ".join(group.description.split()), ""]
        lines += ["| option | value | what it does |", "|---|---|---|"]
        for action in actions:
            names = ", ".join(f"`{option}`" for option in action.option_strings) or f"`{action.dest}`"
            lines.append(f"| {names} | {_value(action)} | {_help(parser, action)} |")
        lines.append("")
    if parser.epilog:
        lines += [" ".join(parser.epilog.split()), ""]
    return lines


def _is_help(action: argparse.Action) -> bool:
    return isinstance(action, argparse._HelpAction)


def cli_reference_markdown() -> str:
    """The whole reference: the global options, then every command."""
    from pipeline.cli import build_parser

    parser = build_parser()
    lines = ["## `audiotag`", "", " ".join((parser.description or "").split()), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    lines += ["| option | value | what it does |", "|---|---|---|"]
    for action in parser._actions:
        if action.option_strings and not _is_help(action):
            names = ", ".join(f"`{option}`" for option in action.option_strings)
            lines.append(f"| {names} | {_value(action)} | {_help(parser, action)} |")
    lines += ["", " ".join((parser.epilog or "").split()), ""]
    lines += ["| command | what it does |", "|---|---|"]
    commands = _subcommands(parser)
    lines += [f"| [`{name}`](#audiotag-{name}) | {_cell(summary)} |" for name, summary, _ in commands]
    lines.append("")
    for name, summary, sub in commands:
        lines += _command_section(name, summary, sub)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs event: fill the marker of the page that asks for the reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference_markdown())

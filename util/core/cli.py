"""The command-line kit every command shares: argument types, shared flags, one-line errors, printing results."""
import argparse
import json

from util.core.files import write_json_atomic, write_text_atomic


def print_json(parser, data, path=None, flag="--out"):
    """Print `data` as JSON and, with `path`, write it there crash-safely (exit 2 naming `flag` if it cannot)."""
    print(json.dumps(data, indent=2))
    if path:
        try:
            write_json_atomic(path, data)
        except OSError as e:
            parser.exit(2, f"error: cannot write {path}: {e.strerror}; choose a writable {flag} PATH\n")


def markdown_table(header, rows):
    """The lines of a markdown table with column titles `header` and `rows` of cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def print_text(parser, lines, path=None, flag="--out"):
    """Print `lines` and, with `path`, write them there crash-safely (exit 2 naming `flag` if it cannot)."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if path:
        try:
            write_text_atomic(path, text)
        except OSError as e:
            parser.exit(2, f"error: cannot write {path}: {e.strerror}; choose a writable {flag} PATH\n")


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value

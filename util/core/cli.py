"""The command-line kit every command shares: argument types, shared flags, one-line errors, printing results."""
import argparse
import json
import sys
from pathlib import Path

from util.core.files import WriteFailed, filesystem_failure, write_json_atomic, write_text_atomic


def print_json(parser, data, path=None, flag="--out"):
    """Print `data` as JSON and, with `path`, write it there crash-safely (exit 2 naming `flag` if it cannot be a file;
    a full disk or the like stops the command through run_command)."""
    print(json.dumps(data, indent=2))
    if path:
        try:
            write_json_atomic(path, data)
        except WriteFailed as e:
            if filesystem_failure(e):
                raise
            parser.exit(2, f"error: cannot write {path}: {e.strerror}; choose a writable {flag} PATH\n")


def markdown_table(header, rows):
    """The lines of a markdown table with column titles `header` and `rows` of cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def print_text(parser, lines, path=None, flag="--out"):
    """Print `lines` and, with `path`, write them there crash-safely (exit 2 naming `flag` if it cannot be a file;
    a full disk or the like stops the command through run_command)."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if path:
        try:
            write_text_atomic(path, text)
        except WriteFailed as e:
            if filesystem_failure(e):
                raise
            parser.exit(2, f"error: cannot write {path}: {e.strerror}; choose a writable {flag} PATH\n")


def float_between(low, high=float("inf")):
    """argparse type: a number from `low` to `high`."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a number from {low:g}" + (f" to {high:g}" if high < float("inf")
                                             else " up") + f", got {text!r}")
        return value
    return parse


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_device_arg(parser, default="auto"):
    """--device, with one help text for every command."""
    parser.add_argument("--device", default=default, help="cpu, cuda or cuda:N; default: CUDA when available")


def add_align_arg(parser, help_suffix=""):
    """--align N, with one help text for every command (`help_suffix`: what it selects there, if anything)."""
    parser.add_argument("--align", type=positive_int, default=1, metavar="N",
                        help="FoldedCNNs (f > 1) with every widened layer rounded up to a multiple of N, beyond the "
                             "paper (8 or 16 suit vector units and tensor cores)" + help_suffix
                             + "; default 1: the paper's widths")


def add_out_arg(parser, formats, required=False):
    """--out PREFIX, the one output rule of the commands that write a report: PREFIX.<format> for each of `formats`
    (a PREFIX that already ends in one of them is taken without it)."""
    files = " and ".join(f"PREFIX.{f}" for f in formats)
    parser.add_argument("--out", metavar="PREFIX", required=required,
                        help=f"{'write' if required else 'also write'} {files}")


def out_paths(prefix, formats):
    """{format: PREFIX.<format>} for --out PREFIX (see add_out_arg)."""
    prefix = Path(prefix)
    if prefix.suffix[1:] in formats:
        prefix = prefix.with_suffix("")
    return {f: prefix.parent / f"{prefix.name}.{f}" for f in formats}


def write_table(prefix, frame, text):
    """--out PREFIX of a table command: the DataFrame `frame` as PREFIX.csv and the markdown `text` as PREFIX.md
    (crash-safely, the folder made), then `text` printed."""
    out = out_paths(prefix, ["csv", "md"])
    out["csv"].parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out["csv"], frame.to_csv(index=False, float_format="%.4f"))
    write_text_atomic(out["md"], text)
    print(text)


class one_line_errors:
    """`with one_line_errors(parser):` turns a ValueError (or the other `errors` given) raised inside into the
    command's one-line `error: ...` and exit status 2, never a traceback. `message(error)` formats it (default
    str). A write that failed for the filesystem's state passes on to run_command (exit 1)."""

    def __init__(self, parser, errors=(ValueError,), message=str):
        self.parser, self.errors, self.message = parser, errors, message

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None and issubclass(kind, self.errors) and not filesystem_failure(error):
            self.parser.exit(2, f"error: {self.message(error)}\n")
        return False


NOTHING_WRITTEN = "nothing was written (files are written whole, at the end)"


def interrupted(error):
    """Whether `error` is Ctrl-C's KeyboardInterrupt or was raised while handling one (as torch.save raises a
    RuntimeError when interrupted mid-write)."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False


def run_command(main, kept=NOTHING_WRITTEN, again="run the same command again"):
    """Run a command's `main()`. Ctrl-C ends it with one line, what was kept and how to go on, and exit status 130
    (the shell's for SIGINT); a write that failed (util.core.files.WriteFailed: a full disk, ...) with one line naming
    the file, the cause, what to do and then `again`, and exit status 1: never a traceback."""
    try:
        main()
    except BaseException as error:
        if interrupted(error):
            sys.stderr.write(f"\ninterrupted: {kept}\n")
            sys.exit(130)
        if isinstance(error, WriteFailed):
            sys.stderr.write(f"error: {error}, then {again}\n")
            sys.exit(1)
        raise

"""Crash-safe files: atomic writes (old file or new, never half), fsynced appends whose torn last line readers drop,
and folders built in a temporary sibling renamed into place (staging_dir, publish)."""
import json
import os
import tempfile
from pathlib import Path

import torch


def write_atomic(path, write):
    """Write through `write(file)` to a temporary name, fsync, rename: old or new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text):
    write_atomic(path, lambda f: f.write(text.encode()))


def write_json_atomic(path, data):
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_atomic(obj, path):
    """torch.save `obj` to `path` crash-safely."""
    write_atomic(path, lambda f: torch.save(obj, f))


def append_line(path, line):
    """Append `line` and a newline to `path`, flushed to disk: a crash loses at most this line, torn.

    Readers drop a torn last line (one without its newline): see `complete_lines` and `keep_lines`.
    """
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def complete_lines(path):
    """The lines of `path` that end in a newline ([] when it is missing): a torn last line is left out."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


def keep_lines(path, n):
    """Keep the first `n` complete lines of `path` (rewritten crash-safely, only when that drops something)."""
    text = Path(path).read_text()
    lines = complete_lines(path)[:n]
    kept = "".join(f"{line}\n" for line in lines)
    if kept != text:
        write_text_atomic(path, kept)
    return lines


def staging_dir(outdir):
    """A fresh temporary sibling of `outdir` to build it in; a ValueError if `outdir` has files or cannot be made.

    An existing empty `outdir` is fine: renaming a directory onto an empty one replaces it.
    """
    outdir = Path(outdir)
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise ValueError(f"{outdir} already exists and is not empty; remove it or choose another output folder")
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    except OSError as e:
        raise ValueError(f"cannot write to {outdir} ({e.filename}: {e.strerror}); "
                         "choose a writable output folder") from None


def publish(tmp, outdir):
    """Rename the finished temporary directory `tmp` to `outdir`."""
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result should not be
    os.replace(tmp, outdir)

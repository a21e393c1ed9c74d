"""Crash-safe files: atomic writes (old file or new, never half), fsynced appends whose torn last line readers drop,
and folders built in a temporary sibling renamed into place (staging_dir, publish). A write that fails raises
WriteFailed, which every command ends with as one line (util.core.cli.run_command)."""
import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

import torch

# A path that cannot be a file (a missing folder, a directory in its place): the command was given a wrong path.
PATH_ERRORS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}
# What to do about the other causes, before running the command again.
FIXES = {**dict.fromkeys(PATH_ERRORS, "create its folder or choose another path"), errno.ENOSPC: "free space", errno.EDQUOT: "free space within your quota (or have it raised)",
         errno.EROFS: "the filesystem is read-only: remount it writable",
         errno.EACCES: "make it writable", errno.EPERM: "make it writable"}


class WriteFailed(OSError):
    """A write to `filename` that failed (a full disk, a quota, permission denied, a read-only filesystem, ...): its
    message names the path, the cause and what to do. Commands end with it as one line and exit status 1
    (util.core.cli.run_command); what was written before stays whole."""

    @property
    def bad_path(self):
        """Whether the path itself cannot be a file: the commands that check their output path say so (exit 2)."""
        return self.errno in PATH_ERRORS

    def __str__(self):
        return f"cannot write {self.filename}: {self.strerror}; {FIXES.get(self.errno, 'fix that')}"


def filesystem_failure(error):
    """Whether `error` is a write that failed for the filesystem's state (WriteFailed, not a wrong path): a command
    stops with it (exit 1) instead of asking for another path (exit 2)."""
    return isinstance(error, WriteFailed) and not error.bad_path


def os_error(error):
    """The OSError that `error` is or was raised while handling (torch.save wraps a full disk's in a RuntimeError),
    else None."""
    while error is not None and not isinstance(error, OSError):
        error = error.__context__
    return error


@contextlib.contextmanager
def writing(path):
    """Turn a failure to write `path` inside the block (an OSError, or an exception raised while handling one) into
    WriteFailed naming it."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as error:
        cause = os_error(error)
        if cause is None or cause.errno is None:
            raise
        raise WriteFailed(cause.errno, cause.strerror, str(path)) from error


def write_atomic(path, write):
    """Write through `write(file)` to a temporary name, fsync, rename: old or new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with writing(path):
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
    with writing(path), open(path, "a") as f:
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
    with writing(outdir):
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result should not be
        os.replace(tmp, outdir)

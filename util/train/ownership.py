"""One job at a time in a run directory (and in a sweep's summary.csv), on one machine or several that share the
filesystem.

`holding(lock, what)` holds a lock file for this process while a block runs, through filelock's SoftFileLease: a
file created exclusively that names its holder (`cat RUN/run.lock`: pid, host), removed on release, whose time a
heartbeat thread renews every HEARTBEAT_SECONDS. Another job finds it held (RunHeld names the holder) unless the
holder is gone:
  - a process of the same machine that no longer runs (killed, crashed): its lock is taken over at once;
  - a lock not renewed for LEASE_SECONDS (a lost machine, a hung process): a job that meets it watches it that long
    again, on its own clock (filelock's; the machines' clocks need not agree), and takes it over if nothing renewed
    it meanwhile.
A job whose lock was taken over while its heartbeat had stopped stops at its next epoch (check_held). Under
torchrun rank 0 holds the lock for the job's ranks and tells them the outcome (distributed.on_main).
"""
import contextlib
import dataclasses
import os
import time
from pathlib import Path

import filelock

from util.train import distributed

RUN_LOCK = "run.lock"  # in the run directory, while a job holds it
# How long a lock may go unrenewed before another job takes it over; FOLDEDCNN_LEASE_SECONDS changes it (every job
# sharing a savedir must use the same). Far above the heartbeat and NFS's attribute caching (60 s at most by default).
LEASE_SECONDS = float(os.environ.get("FOLDEDCNN_LEASE_SECONDS", 300))
HEARTBEAT_SECONDS = LEASE_SECONDS / 5


class RunHeld(ValueError):
    """A lock another job holds: the message names its holder (`holder`: "process PID on HOST")."""

    def __init__(self, message, holder="another job"):
        super().__init__(message)
        self.holder = holder

    def __reduce__(self):  # crosses torchrun's ranks (distributed.on_main)
        return RunHeld, (str(self), self.holder)


def holder(lock):
    """{"pid", "host", "age" (seconds since it was last renewed, by this machine's clock)} of the lock file, None
    when there is none."""
    try:
        text, renewed = Path(lock).read_text(), Path(lock).stat().st_mtime
    except (OSError, UnicodeDecodeError):
        return None
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if not fields.get("pid", "").isdigit():
        return None
    return {"pid": int(fields["pid"]), "host": fields.get("host", "?"), "age": max(time.time() - renewed, 0.0)}


def describe(owner):
    return f"process {owner['pid']} on {owner['host']}" if owner else "another job"


@dataclasses.dataclass
class Hold:
    """This process's hold of a lock: its lease, how many nested blocks hold it, and how it was lost (a filelock
    LeaseCompromise, set by the heartbeat thread) or None."""

    lease: filelock.SoftFileLease = None
    depth: int = 1
    lost: object = None
    made: tuple = ()  # the folders acquire created for the lock, deepest first: removed on release if still empty


_held = {}  # lock path -> Hold, the locks this process holds


def acquire(lock, what, wait=0.0, watch=True):
    """Hold `lock` (re-entrant within this process), creating its folder; RunHeld naming the holder if another job
    has it. `wait`: seconds to keep trying. `watch`: a lock not renewed for LEASE_SECONDS is watched that long and
    taken over if it stays unrenewed (else RunHeld at once)."""
    key = str(Path(lock).resolve())
    if key in _held:
        _held[key].depth += 1
        return
    folder = Path(lock).parent
    made = tuple(p for p in (folder, *folder.parents) if not p.exists())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot write to {folder}: {e.strerror}; choose a writable savedir") from None
    hold = Hold(made=made)
    lease = filelock.SoftFileLease(key, lease_duration=LEASE_SECONDS, heartbeat_interval=HEARTBEAT_SECONDS,
                                   on_compromise=lambda lost: setattr(hold, "lost", lost))
    before = holder(key)
    try:
        lease.acquire(timeout=wait) if wait else lease.acquire(blocking=False)
    except filelock.Timeout:
        now = holder(key)
        if not (watch and now and now["age"] >= LEASE_SECONDS):
            raise RunHeld(f"{what} is held by {describe(now)} (its lock {lock}, renewed "
                          f"{now['age'] if now else 0:.0f} s ago): let that job finish, or stop it and run this "
                          "command again", describe(now)) from None
        print(f"{what}: {describe(now)} has not renewed its lock for {now['age']:.0f} s; watching it "
              f"{LEASE_SECONDS:.0f} s more before taking over", flush=True)
        try:
            lease.acquire(timeout=LEASE_SECONDS + HEARTBEAT_SECONDS)
        except filelock.Timeout:
            raise RunHeld(f"{what} is held by {describe(holder(key))}, which renewed its lock while watched: let "
                          "that job finish, or stop it and run this command again", describe(holder(key))) from None
    if before and gone(before, holder(key)):
        print(f"{what}: taking over from {describe(before)}, which no longer holds it", flush=True)
    hold.lease = lease
    _held[key] = hold


def gone(owner, me):
    """Whether the lock's former `owner` had died or stopped renewing, rather than let go of it just now (`me`: the
    lock's record now that this process holds it)."""
    if owner["age"] >= LEASE_SECONDS:
        return True
    if me is None or owner["host"] != me["host"]:
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


def release(lock):
    """Let go of `lock` (the outermost of this process's holds of it)."""
    key = str(Path(lock).resolve())
    hold = _held[key]
    hold.depth -= 1
    if hold.depth == 0:
        del _held[key]
        hold.lease.release()
        for folder in hold.made:  # a run refused before it wrote anything leaves no folder behind
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote there
                break


def check_held(lock, what):
    """RunHeld if this process's hold of `lock` was taken over while its heartbeat had stopped."""
    hold = _held.get(str(Path(lock).resolve()))
    if hold and hold.lost is not None:
        raise RunHeld(f"{what} was taken over by {describe(holder(lock))} while this job's lock went unrenewed "
                      f"({hold.lost.reason}); this job stops here and leaves it to that one", describe(holder(lock)))


@contextlib.contextmanager
def holding(lock, what, wait=0.0, watch=True):
    """Hold `lock` while the block runs (see acquire); under torchrun rank 0 holds it for every rank."""
    distributed.on_main(acquire, lock, what, wait, watch)
    try:
        yield
    finally:
        distributed.on_main(release, lock)


def run_lock(savedir):
    """The lock file of a run directory."""
    return Path(savedir) / RUN_LOCK

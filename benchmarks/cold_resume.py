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


# --- master_sdk's cold start on the hello_world product ---------------------------------

# a fresh process opening the workbench (a notebook's first cell), then exiting
OPEN_SCRIPT = "import sys, master_sdk as ms; ms.Workbench.open(sys.argv[1]).close()"
# starts paused hello_world runs (untimed); prints their ids
START_SCRIPT = """
import sys, master_sdk as ms
wb = ms.Workbench.open(sys.argv[1])
runs = [wb.run("hello_world/greet", inputs={"text": f"cold {i}"}) for i in range(int(sys.argv[2]))]
if sys.argv[3:] == ["approved"]:  # on to the user input, whose submit runs the agent
    for run in runs:
        run.approve()
print(" ".join(run.id for run in runs))
wb.close()
"""
SUBMITTED = '{"audience": "the board"}'


@dataclass(frozen=True)
class ChildTiming:
    """Wall and CPU (user + system) seconds of fresh processes, one pair per process."""

    wall_s: tuple[float, ...]
    cpu_s: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """The timing as JSON-ready data."""
        return {
            "wall_s": Stats.of(self.wall_s).to_json(),
            "cpu_s": Stats.of(self.cpu_s).to_json(),
        }

    def line(self, label: str) -> str:
        """One printed line: medians, ranges and the count."""
        wall, cpu = Stats.of(self.wall_s), Stats.of(self.cpu_s)
        return (
            f"  {label:<44} wall median {wall.median:.3f} s ({wall.min:.3f}-{wall.max:.3f})  "
            f"CPU median {cpu.median:.3f} s ({cpu.min:.3f}-{cpu.max:.3f}), {wall.n} runs"
        )


def time_child(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[float, float, str]:
    """Wall and CPU seconds of one child process, and its stdout; raises if it fails."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} exited with {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout.decode(errors="replace")


def hello_world_project(folder: Path) -> Path:
    """A copy of the repository's hello_world product and configs (no secrets)."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "configs", folder / "configs", ignore=ignore)
    shutil.copytree(
        REPO_ROOT / "products" / "hello_world",
        folder / "products" / "hello_world",
        ignore=ignore,
    )
    return folder


def master_command(python: str = sys.executable) -> list[str]:
    """How the ``master`` console script is run: the installed script when there is one
    (``[project.scripts] master = "master_sdk.cli:main"``), else ``python -m``."""
    script = Path(python).with_name("master")
    return [str(script)] if script.exists() else [python, "-m", "master_sdk.cli"]


def clear_master_caches() -> None:
    """Removes the cold-start caches of the installed master_sdk (settings, parsed YAML,
    pydantic plugins, compiled flows), as after an upgrade; bytecode is left alone."""
    from master_sdk.config import file_cache
    from master_sdk.products import flow_cache

    folder = file_cache.beside_bytecode(file_cache.__file__, "x").parent
    for path in folder.glob("master_sdk-*.json"):
        path.unlink(missing_ok=True)
    flows = file_cache.beside_bytecode(flow_cache.__file__, flow_cache.CACHE_FOLDER)
    for path in flows.glob("*.json"):
        path.unlink(missing_ok=True)


def measure_master_cold(
    workdir: Path, *, runs: int = 9, python: str = sys.executable
) -> dict[str, ChildTiming]:
    """Fresh processes on hello_world: ``master approve RUN`` (the run goes on to its
    user-input step), ``master submit RUN --data ...`` (the run goes on through its agent
    step to the end: the product's code, the model router and pydantic are loaded) and
    ``Workbench.open()``, each with the library's caches warm (as after any first use) and
    cold (removed before each process: the first process after an edit or an upgrade pays
    this; bytecode stays); plus ``import master_sdk`` and a bare interpreter. Each approve
    and submit finishes a different paused run."""
    root = hello_world_project(workdir / "project")
    env = child_env()
    # an installed program has its bytecode: a PYTHONDONTWRITEBYTECODE in the calling
    # shell would time compiling (and switch the caches off)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time_child([python, "-c", START_SCRIPT, str(root), str(2 * runs + 2)], env=env)
    paused = started[2].split()
    approved = time_child(
        [python, "-c", START_SCRIPT, str(root), str(2 * runs + 2), "approved"], env=env
    )[2].split()
    master = master_command(python)
    approve = [*master, "--root", str(root), "approve"]
    submit = [*master, "--root", str(root), "submit", "--data", SUBMITTED]
    reaches = {"approve": "waiting_input", "submit": "completed"}
    results: dict[str, ChildTiming] = {}
    for label, cold in (("warm", False), ("cold", True)):
        for what in ("approve", "submit", "open"):
            walls, cpus = [], []
            for index in range(runs + 1):
                if cold:
                    clear_master_caches()
                if what == "approve":
                    argv = [*approve, paused.pop()]
                elif what == "submit":
                    argv = [*submit, approved.pop()]
                else:
                    argv = [python, "-c", OPEN_SCRIPT, str(root)]
                wall, cpu, out = time_child(argv, env=env)
                if what in reaches and reaches[what] not in out:
                    raise AssertionError(f"{what} did not reach {reaches[what]}: {out}")
                if index > 0:  # the first writes bytecode and, warm, the caches
                    walls.append(wall)
                    cpus.append(cpu)
            results[f"{what}_{label}"] = ChildTiming(tuple(walls), tuple(cpus))
    for name, argv in (
        ("import_master_sdk", [python, "-c", "import master_sdk"]),
        ("python", [python, "-c", "pass"]),
    ):
        pairs = [time_child(argv, env=env)[:2] for _ in range(runs + 1)][1:]
        results[name] = ChildTiming(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
    return results


def top_imports(
    argv: Sequence[str], *, count: int = 12, env: Mapping[str, str] | None = None
) -> list[ImportLine]:
    """The top-level imports of ``python -X importtime`` for ``argv`` (a python command
    line, the interpreter first), largest cumulative time first."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr[-2000:]}")
    lines = parse_importtime(done.stderr)
    return sorted((x for x in lines if x.depth == 0), key=lambda x: -x.cumulative_us)[:count]


def format_top_imports(title: str, lines: Sequence[ImportLine]) -> str:
    """The printed list of :func:`top_imports`."""
    total = sum(x.cumulative_us for x in lines)
    body = [f"    {x.cumulative_us / 1000:7.1f} ms  {x.module}" for x in lines]
    return "\n".join(
        [f"  {title} (top-level imports, cumulative; listed: {total / 1000:.1f} ms)", *body]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.cold_resume``: master_sdk's cold start on hello_world and,
    when LangGraph is installed, its cold resume in the same run."""
    import argparse
    import importlib.util
    import json
    import os
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_resume")
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per figure")
    parser.add_argument("--output", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    report: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        work = Path(tmp)
        master = measure_master_cold(work / "master", runs=args.runs)
        report["master_sdk"] = {name: timing.to_json() for name, timing in master.items()}
        print("master_sdk, hello_world, fresh processes:")
        labels = {
            "approve_warm": "master approve RUN (caches warm)",
            "submit_warm": "master submit RUN, to the end (caches warm)",
            "open_warm": "Workbench.open() + close (caches warm)",
            "approve_cold": "master approve RUN (caches cold)",
            "submit_cold": "master submit RUN, to the end (caches cold)",
            "open_cold": "Workbench.open() + close (caches cold)",
            "import_master_sdk": "python -c 'import master_sdk'",
            "python": "python -c pass",
        }
        for name, label in labels.items():
            print(master[name].line(label))
        if importlib.util.find_spec("langgraph") is not None:
            (work / "langgraph").mkdir()
            peer = measure_langgraph_cold_resume(work / "langgraph", runs=args.runs)
            report["langgraph"] = peer.to_json()
            print("LangGraph + SqliteSaver, the same flow shape, fresh processes:")
            print(format_cold_resume(peer))
            ratio = peer.resume.stats.median / Stats.of(master["approve_warm"].wall_s).median
            print(f"  master approve is {ratio:.1f}x faster than LangGraph's cold resume (wall)")
        else:
            print("LangGraph is not installed (pip install -e '.[bench]'): no peer figures")
        root = work / "master" / "project"
        env = child_env()
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        opened = top_imports([sys.executable, "-c", OPEN_SCRIPT, str(root)], env=env)
        print(format_top_imports("Workbench.open()", opened))
        # two more paused runs: the first approve warms the caches (the cold series
        # removed them), the second runs under -X importtime
        paused = time_child([sys.executable, "-c", START_SCRIPT, str(root), "2"], env=env)[2]
        warmup, measured = paused.split()
        approve = [sys.executable, "-m", "master_sdk.cli", "--root", str(root), "approve"]
        time_child([*approve, warmup], env=env)
        approved = top_imports([*approve, measured], env=env)
        print(format_top_imports("master approve RUN", approved))
    report["load_after"] = os.getloadavg()
    print(
        "load average before/after: "
        + " / ".join(" ".join(f"{x:.2f}" for x in report[k]) for k in ("load_before", "load_after"))
    )
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

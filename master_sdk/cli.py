"""The ``master`` command: the workbench from a terminal.

Uses the public API only (law 9). Exit codes: 0 ok, 1 an error (one line on stderr
naming what to fix), 2 bad usage.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import master_sdk as ms


def _statuses() -> list[str]:
    import master_sdk as ms

    return [status.value for status in ms.RunStatus]


def _failing(run: ms.Run) -> bool:
    """Whether a run's status makes the command exit 1 (a step failed, a policy blocked)."""
    import master_sdk as ms

    return run.status in (ms.RunStatus.FAILED, ms.RunStatus.BLOCKED)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="master", description="Run and inspect governed, durable flows."
    )
    parser.add_argument("--root", help="project folder (default: found upward from here)")
    parser.add_argument(
        "--store",
        help="the run store: a SQLite file path, sqlite:///relative/path, "
        "sqlite:////absolute/path or memory:// (default: app.store, storage/master.sqlite3)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("products", help="list products")
    flows = sub.add_parser("flows", help="list flows")
    flows.add_argument("product", nargs="?")
    sub.add_parser("validate", help="check every product and flow; non-zero exit on errors")
    new = sub.add_parser("new", help="scaffold: master new product NAME")
    new.add_argument("kind", choices=["product"])
    new.add_argument("name", metavar="NAME")

    run = sub.add_parser("run", help="start a flow: master run PRODUCT/FLOW --input key=value")
    run.add_argument("ref", metavar="PRODUCT/FLOW")
    run.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input (string); KEY:=JSON for a JSON value; repeatable",
    )
    run.add_argument("--inputs-json", metavar="FILE", help="inputs as a JSON object file")
    run.add_argument("--by", help="who starts the run")

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--status", choices=_statuses())
    runs.add_argument("--product")
    runs.add_argument("--flow")

    show = sub.add_parser(
        "show", help="show one run (retrying an interrupted idempotent tool, as get_run does)"
    )
    show.add_argument("run_id", metavar="RUN")
    show.add_argument(
        "--no-recover", action="store_true", help="only read the run; never run a step"
    )

    approve = sub.add_parser("approve", help="approve one or several paused runs")
    approve.add_argument("run_ids", metavar="RUN", nargs="+")
    approve.add_argument("--comment")
    approve.add_argument("--by")
    approve.add_argument("--allow-flow-change", action="store_true")
    approve.add_argument(
        "--no-continue",
        action="store_true",
        help="only record the decisions; `master work` continues the runs",
    )

    pending = sub.add_parser("pending", help="list paused runs waiting for a decision")
    pending.add_argument("--product")
    pending.add_argument("--flow")
    pending.add_argument("--step")
    pending.add_argument("--kind", choices=["approval", "input"])
    pending.add_argument("--experiment")
    pending.add_argument(
        "--older-than", type=float, metavar="SECONDS", help="waiting at least this long"
    )

    work = sub.add_parser(
        "work", help="continue every decided run (exactly once, whichever process also works)"
    )
    work.add_argument("--once", action="store_true", help="one pass, then exit")
    work.add_argument(
        "--interval", type=float, default=1.0, help="seconds between passes that found nothing"
    )

    reject = sub.add_parser("reject", help="reject a paused run")
    reject.add_argument("run_id", metavar="RUN")
    reject.add_argument("--reason", "--comment", dest="reason")
    reject.add_argument("--by")
    reject.add_argument("--allow-flow-change", action="store_true")

    submit = sub.add_parser("submit", help="give a paused run its input")
    submit.add_argument("run_id", metavar="RUN")
    submit.add_argument("--data", required=True, help="a JSON object, or @FILE")
    submit.add_argument("--by")
    submit.add_argument("--allow-flow-change", action="store_true")

    retry = sub.add_parser("retry", help="run an interrupted or failed step again")
    retry.add_argument("run_id", metavar="RUN")
    retry.add_argument("--by")
    retry.add_argument("--allow-flow-change", action="store_true")
    skip = sub.add_parser("skip", help="give an interrupted or failed step an output by hand")
    skip.add_argument("run_id", metavar="RUN")
    skip.add_argument("--output", help="the step's output as JSON (default null)")
    skip.add_argument("--by")
    skip.add_argument("--allow-flow-change", action="store_true")
    abort = sub.add_parser("abort", help="end a run as aborted (it cannot be continued)")
    abort.add_argument("run_id", metavar="RUN")
    abort.add_argument("--reason")
    abort.add_argument("--by")

    trace = sub.add_parser(
        "trace",
        help="a run's trace events; `trace export --otlp URL` sends past runs as spans",
    )
    trace.add_argument("run_id", metavar="RUN", help="a run id, or `export`")
    trace.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    trace.add_argument("--output", "-o", help="write to this file (required for parquet)")
    # `master trace export --otlp URL [--since TIME] [--run RUN]...` (OpenTelemetry)
    trace.add_argument(
        "--otlp", metavar="URL", help="export: the OTLP/HTTP traces URL (default: configured)"
    )
    trace.add_argument("--since", help="export: runs with events at or after this ISO time")
    trace.add_argument(
        "--run", action="append", dest="runs", metavar="RUN", help="export: only this run"
    )

    fork = sub.add_parser(
        "fork", help="a new run copying RUN's steps before STEP and running the rest again"
    )
    fork.add_argument("run_id", metavar="RUN")
    fork.add_argument("--at", required=True, metavar="STEP", help="the first step to run again")
    fork.add_argument("--model", help="logical model of the agent steps from STEP on")
    fork.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input to change (string); KEY:=JSON for a JSON value; repeatable",
    )
    fork.add_argument("--inputs-json", metavar="FILE", help="inputs to change, a JSON file")
    fork.add_argument("--by", help="who forks")

    diff = sub.add_parser("diff", help="what changed from RUN_A to RUN_B, step by step")
    diff.add_argument("run_a", metavar="RUN_A")
    diff.add_argument("run_b", metavar="RUN_B")
    diff.add_argument("--format", choices=["table", "json"], default="table")

    schema = sub.add_parser("schema", help="print the JSON Schema of a spec file")
    schema.add_argument("kind", choices=["flow", "manifest", "product"])

    store = sub.add_parser("store", help="the run store: info, export, import, copy")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    store_sub.add_parser(
        "info", help="path, schema version, durability pragmas, integrity, run counts"
    )
    export = store_sub.add_parser(
        "export", help="write runs to FILE (*.jsonl: JSON Lines; *.sqlite3: SQLite backup)"
    )
    export.add_argument("file", metavar="FILE")
    export.add_argument(
        "--run", action="append", dest="runs", metavar="RUN", help="only this run; repeatable"
    )
    export.add_argument("--format", choices=["jsonl", "sqlite"], help="default: from the suffix")
    export.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    imp = store_sub.add_parser("import", help="merge the runs of an exported FILE")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--format", choices=["jsonl", "sqlite"], help="default: from the suffix")
    imp.add_argument(
        "--on-duplicate",
        choices=["skip", "error"],
        default="skip",
        help="a run already in the store: skip it (default) or refuse the import",
    )
    copy = store_sub.add_parser(
        "copy",
        help="copy every run of SRC into DST (store names, e.g. a SQLite path and "
        "postgresql://user@host/db), redacted; runs already in DST are skipped",
    )
    copy.add_argument("source", metavar="SRC")
    copy.add_argument("target", metavar="DST")
    _add_prune_parser(store_sub)
    _experiment_parsers(sub)
    _add_test_command(sub)
    _add_server_commands(sub)
    _memory_parsers(sub)
    return parser


def _add_prune_parser(store_sub: Any) -> None:
    prune = store_sub.add_parser(
        "prune",
        help="remove runs last updated longer ago than DURATION (ended runs unless --status "
        "says otherwise); runs held by experiments are kept",
    )
    prune.add_argument(
        "--older-than", required=True, metavar="DURATION", help="e.g. 90d, 12h, 2w, 30m"
    )
    prune.add_argument(
        "--status",
        action="append",
        metavar="S",
        help="prune runs in this status (repeat, or separate with commas); default: "
        "completed, rejected, blocked, aborted. Paused or running runs only when named",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="show what would be removed, remove nothing"
    )


def _prune(wb: ms.Workbench, args: argparse.Namespace) -> int:
    report = wb.prune_store(args.older_than, statuses=args.status, dry_run=args.dry_run)
    print(f"{wb.store.location}: {report.summary()}")
    return 0


def _add_server_commands(sub: Any) -> None:
    """``master serve``, ``master token`` and ``master link`` (the HTTP server)."""
    serve = sub.add_parser(
        "serve", help="serve the JSON API and the approval page (needs master-sdk[server])"
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=4, help="threads continuing runs")
    serve.add_argument(
        "--work-interval", type=float, default=2.0,
        help="seconds between passes continuing runs decided elsewhere (0: none)",
    )  # fmt: skip
    serve.add_argument(
        "--start-wait", type=float, default=10.0,
        help="seconds POST /runs waits for a free worker thread before answering 503",
    )  # fmt: skip
    token = sub.add_parser(
        "token", help="make an API token for USER; prints the secrets.yaml entry to add"
    )
    token.add_argument("user", metavar="USER")
    token.add_argument(
        "--role", action="append", dest="roles", required=True,
        choices=["viewer", "reviewer", "runner", "admin"], help="repeatable",
    )  # fmt: skip
    link = sub.add_parser("link", help="a signed, expiring link to a run's approval page")
    link.add_argument("run_id", metavar="RUN", help="a run id, or '*' for the pending list")
    link.add_argument("--user", required=True, help="who the link signs in")
    link.add_argument("--minutes", type=float, default=60.0)
    link.add_argument("--base-url", default="http://127.0.0.1:8000")


def _server_command(wb: ms.Workbench | None, args: argparse.Namespace) -> int:
    if args.command == "token":
        from master_sdk.server.auth import new_token, token_hash

        token = new_token()
        print(f"token (shown once; give it to {args.user}): {token}")
        print("add to secrets/secrets.yaml under server.tokens:")
        print(f"  - user: {args.user}\n    roles: [{', '.join(args.roles)}]")
        print(f"    sha256: {token_hash(token)}")
        return 0
    assert wb is not None  # noqa: S101  # serve and link open the workbench first
    if args.command == "link":
        from master_sdk.server.serve import make_link

        url = make_link(wb, args.run_id, user=args.user, minutes=args.minutes,
                        base_url=args.base_url)  # fmt: skip
        # made here from a run id, a configured user and a signature: printed as it is
        # (stdout's redaction would take the host's address and may take the signature)
        out = sys.__stdout__ or sys.stderr
        out.write(url + "\n")
        out.flush()
        return 0
    from master_sdk.server.serve import serve

    serve(wb, host=args.host, port=args.port, workers=args.workers,
          work_interval_s=args.work_interval, log_level="warning",
          start_wait_s=args.start_wait)  # fmt: skip
    return 0


def _add_test_command(sub: Any) -> None:
    test = sub.add_parser(
        "test",
        help="run notebooks against their committed outputs (isolated, deterministic, "
        "no network models); exit 1 on any difference",
    )
    test.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="notebooks or folders (default: products/*/notebooks/*.ipynb and notebooks/)",
    )
    test.add_argument(
        "--update", action="store_true", help="rewrite the committed outputs (minimal diff)"
    )


# JSON given on the command line or in a file named there: bigger files are refused unread
# (every input is capped far below this by policy.max_input_bytes anyway)
_MAX_JSON_BYTES = 16 * 1024 * 1024


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (as YAML files do)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice; give each key once")
        out[key] = value
    return out


def _experiment_parsers(sub: Any) -> None:
    """``master eval``, ``master experiments``, ``master compare``."""
    evaluate = sub.add_parser(
        "eval", help="run a flow over a table of cases: master eval PRODUCT/FLOW --cases FILE"
    )
    evaluate.add_argument("ref", metavar="PRODUCT/FLOW")
    evaluate.add_argument(
        "--cases", required=True, metavar="FILE", help="*.csv, *.jsonl or *.parquet; one case a row"
    )
    evaluate.add_argument("--name", required=True, help="the experiment's name (unique)")
    evaluate.add_argument("--concurrency", type=int, default=8, metavar="K")
    evaluate.add_argument("--max-cost-usd", type=float, metavar="USD")
    evaluate.add_argument(
        "--score",
        action="append",
        default=[],
        metavar="KIND:FIELD=COLUMN",
        help="exact|contains|numeric_close:FIELD=COLUMN, regex:FIELD=PATTERN, "
        "json_match:COLUMN; repeatable",
    )
    evaluate.add_argument(
        "--answers", metavar="JSON", help="scripted human steps: {step: decision} or @FILE"
    )
    evaluate.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LOGICAL=MODEL",
        help="a model override for this experiment; repeatable",
    )
    evaluate.add_argument(
        "--resume", action="store_true", help="continue the experiment NAME if it exists"
    )
    sub.add_parser("experiments", help="list experiments")
    compare = sub.add_parser("compare", help="compare two experiments case by case")
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    compare.add_argument("--on", help="pair cases by this column (default: case key)")
    compare.add_argument("--cases", action="store_true", help="also print every paired case")


def _cases_file(path: str) -> Any:
    import pandas as pd

    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read cases file {path}: {exc}") from None
    raise SystemExit(f"error: --cases {path}: use a .csv, .jsonl or .parquet file")


def _scorers(specs: Sequence[str]) -> list[Any]:
    import master_sdk as ms

    made: list[Any] = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        field, _, other = rest.partition("=")
        if kind == "json_match" and rest:
            made.append(ms.scorers.json_match(expected=rest))
        elif kind in ("exact", "contains", "numeric_close") and field and other:
            made.append(getattr(ms.scorers, kind)(field, expected=other))
        elif kind == "regex" and field and other:
            made.append(ms.scorers.regex(field, other))
        else:
            raise SystemExit(
                f"error: --score {spec!r}: use exact|contains|numeric_close:FIELD=COLUMN, "
                "regex:FIELD=PATTERN or json_match:COLUMN"
            )
    return made


def _experiment_command(wb: ms.Workbench, args: argparse.Namespace) -> int:

    if args.command == "experiments":
        frame = wb.experiments()
        print(_table(frame[["name", "ref", "status", "cases", "updated_at", "error"]]))
        return 0
    if args.command == "compare":
        comparison = wb.compare(args.a, args.b, on=args.on)
        print(comparison)
        if args.cases:
            print(_table(comparison.cases.drop(columns=["output_a", "output_b"])))
        return 0
    answers = _json_arg(args.answers, "--answers") if args.answers else None
    models = {}
    for item in args.model:
        logical, sep, target = item.partition("=")
        if not sep or not logical or not target:
            raise SystemExit(f"error: --model expects LOGICAL=MODEL, got {item!r}")
        models[logical] = target
    scorers = _scorers(args.score)
    existing = set(wb.experiments()["name"])
    if args.resume and args.name in existing:
        exp = wb.experiment(args.name)
        exp.resume(scorers=scorers or None, answers=answers, concurrency=args.concurrency)
    else:
        exp = wb.evaluate(
            args.ref,
            _cases_file(args.cases),
            name=args.name,
            scorers=scorers,
            answers=answers,
            models=models or None,
            concurrency=args.concurrency,
            max_cost_usd=args.max_cost_usd,
        )
    print(exp)
    status = exp.status
    if status == "interrupted":
        print(f"interrupted: continue with master eval {args.ref} --cases {args.cases} "
              f"--name {args.name} --resume", file=sys.stderr)  # fmt: skip
        return 130
    return 0 if status in ("completed", "waiting") else 1


def _json_arg(text: str, what: str) -> Any:
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            if path.stat().st_size > _MAX_JSON_BYTES:
                raise SystemExit(
                    f"error: {what} file {path} is over {_MAX_JSON_BYTES // 2**20} MiB; "
                    "give a smaller JSON file"
                )
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SystemExit(f"error: cannot read {what} file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SystemExit(f"error: {what} file {path} is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise SystemExit(
            f"error: {what} is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    except RecursionError:
        raise SystemExit(
            f"error: {what} nests too deeply to be input (the limit is 64 levels); flatten the JSON"
        ) from None
    except ValueError as exc:
        raise SystemExit(f"error: {what} is refused: {exc}") from None


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if args.inputs_json:
        loaded = _json_arg("@" + args.inputs_json, "--inputs-json")
        if not isinstance(loaded, dict):
            raise SystemExit("error: --inputs-json must hold a JSON object")
        data.update(loaded)
    for item in args.input:
        if ":=" in item and ("=" not in item or item.index(":=") < item.index("=")):
            key, _, raw = item.partition(":=")
            value = _json_arg(raw, f"--input {key}")
        else:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"error: --input expects KEY=VALUE, got {item!r}")
        if key in data:
            raise SystemExit(f"error: the input {key!r} is given twice; give each input once")
        data[key] = value
    return data


def _describe(run: ms.Run) -> str:
    lines = [f"run {run.id} {run.ref}: {run.status}"]
    waiting = run.waiting_for
    if waiting:
        lines.append(f"  waiting at step '{waiting.get('step')}': {waiting.get('prompt', '')}")
        if "show" in waiting:
            lines.append(f"  show: {json.dumps(waiting['show'], ensure_ascii=False)}")
        if run.status == "waiting_approval":
            lines.append(
                f"  next: master approve {run.id} [--comment TEXT] | master reject {run.id}"
            )
        else:
            if "schema" in waiting:
                lines.append(f"  schema: {json.dumps(waiting['schema'], ensure_ascii=False)}")
            lines.append(f"  next: master submit {run.id} --data '{{...}}'")
    if run.status == "completed":
        lines.append(f"  output: {json.dumps(run.output, ensure_ascii=False)}")
    if run.error:
        lines.append(f"  error: {run.error}")
    if run.status.recoverable:
        lines.append(
            f"  next: master retry {run.id} | master skip {run.id} | master abort {run.id}"
        )
    return "\n".join(lines)


def _table(frame: Any) -> str:
    return str(frame.to_string(index=False)) if len(frame) else "(none)"


class _Output:
    """Where the command's text goes: stdout passes through the workbench's redaction, like
    every error message, as the command writes it (see :class:`_RedactedLines`)."""

    def __init__(self) -> None:
        self.redact: Callable[[Any], Any] = lambda value: value
        self.buffer = _RedactedLines(self)

    def flush(self) -> None:
        self.buffer.drain()

    def error(self, message: str) -> None:
        print(self.redact(message), file=sys.stderr)


class _RedactedLines(io.TextIOBase):
    """A command's stdout: text is held until a write ends a line, then everything held is
    redacted as one piece and printed at once. So a long command (``master work``,
    ``master eval``) shows its progress as it goes, and a block printed by one ``print``
    (a private key's lines, a table) is redacted whole."""

    def __init__(self, out: _Output) -> None:
        super().__init__()
        self._out = out
        self._held: list[str] = []
        # the real stdout: while the command runs, sys.stdout is this object
        self._stdout = sys.stdout

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._held.append(text)
        if text.endswith("\n"):
            self.drain()
        return len(text)

    def drain(self) -> None:
        """Print what is held (the end of the command, or a line just ended)."""
        text = "".join(self._held)
        self._held.clear()
        if text:
            self._stdout.write(self._out.redact(text))
            self._stdout.flush()


def _run(args: argparse.Namespace, out: _Output) -> int:
    import master_sdk as ms

    if args.command == "test":
        try:
            from master_sdk.notebook_tests import run_tests
        except ImportError as exc:  # the notebook-tests extra is not installed
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return run_tests(args.paths, root=args.root, update=args.update)
    if args.command == "schema":
        print(json.dumps(ms.Workbench.spec_schema(args.kind), indent=2))
        return 0
    if args.command == "token":
        return _server_command(None, args)
    wb = ms.Workbench.open(args.root, store=args.store)
    out.redact = wb.redact
    try:
        with redirect_stdout(out.buffer):
            return _dispatch(wb, args)
    finally:
        wb.close()


def _dispatch(wb: ms.Workbench, args: argparse.Namespace) -> int:
    from master_sdk.errors import MasterError

    command = args.command
    if command in ("serve", "link"):
        return _server_command(wb, args)
    if command == "products":
        for name in wb.products():
            print(name)
        return 0
    if command == "flows":
        for ref in wb.flows(args.product, isolate=True):
            print(ref)
        broken = 0
        for name in [args.product] if args.product else wb.products():
            try:
                wb.flows(name)
            except MasterError as exc:  # a broken product is named, the others listed
                broken += 1
                print(f"error: product '{name}' cannot be loaded: {exc}", file=sys.stderr)
        return 1 if broken else 0
    if command == "validate":
        problems = wb.validate(isolate=True)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"ok: {len(wb.flows())} flow(s) in {len(wb.products())} product(s)")
        return 0
    if command == "new":
        folder = wb.new_product(args.name)
        print(f"created {folder}; try: master run {args.name}/draft --input topic=tea")
        return 0
    if command == "run":
        run = wb.run(args.ref, _inputs(args), by=args.by)
        print(_describe(run))
        return 1 if _failing(run) else 0
    if command == "runs":
        frame = wb.runs(product=args.product, flow=args.flow, status=args.status)
        columns = ["run_id", "product", "flow", "status", "waiting_step", "updated_at"]
        print(_table(frame[columns]))
        return 0
    if command == "trace":
        return _trace(wb, args)
    if command == "store":
        return _store(wb, args)
    if command == "memory":
        return _memory_command(wb, args)
    if command == "fork":
        parent = wb.get_run(args.run_id, recover=False)
        run = parent.fork(args.at, inputs=_inputs(args) or None, model=args.model, by=args.by)
        print(f"forked {parent.id} at '{args.at}'")
        print(_describe(run))
        return 1 if _failing(run) else 0
    if command == "diff":
        return _diff(wb, args)
    if command in ("eval", "experiments", "compare"):
        return _experiment_command(wb, args)
    if command in ("pending", "work") or (command == "approve" and len(args.run_ids) > 1):
        return _review(wb, args)
    if command == "approve" and args.no_continue:
        return _review(wb, args)
    if command == "approve":
        args.run_id = args.run_ids[0]
    if command == "show":
        run = wb.get_run(args.run_id, recover=not args.no_recover)
        print(_describe(run))
        return 0
    # an action is the user's decision: do not let opening the run act first
    run = wb.get_run(args.run_id, recover=False)
    allow = getattr(args, "allow_flow_change", False)
    if command == "approve":
        run.approve(args.comment, by=args.by, allow_flow_change=allow)
    elif command == "reject":
        run.reject(args.reason, by=args.by, allow_flow_change=allow)
    elif command == "submit":
        data = _json_arg(args.data, "--data")
        if not isinstance(data, dict):
            raise SystemExit("error: --data must be a JSON object")
        run.submit(data, by=args.by, allow_flow_change=allow)
    elif command == "retry":
        run.retry(by=args.by, allow_flow_change=allow)
    elif command == "skip":
        output = _json_arg(args.output, "--output") if args.output else None
        run.skip(output, by=args.by, allow_flow_change=allow)
    elif command == "abort":
        run.abort(args.reason, by=args.by)
    print(_describe(run))
    return 0 if command == "abort" or not _failing(run) else 1


def _review(wb: ms.Workbench, args: argparse.Namespace) -> int:
    """``master pending``, ``master approve RUN...`` (several, or ``--no-continue``) and
    ``master work``."""
    command = args.command
    if command == "pending":
        frame = wb.pending(
            product=args.product,
            flow=args.flow,
            step=args.step,
            kind=args.kind,
            experiment=args.experiment,
            older_than=args.older_than,
        )
        columns = ["run_id", "product", "flow", "step", "kind", "started_by", "waited", "show"]
        print(_table(frame[columns]))
        return 0
    if command == "approve":
        outcomes = wb.decide(
            args.run_ids,
            "approve",
            comment=args.comment,
            by=args.by,
            proceed=not args.no_continue,
        )
        print(_table(outcomes))
        good = {"decided", "continued"}
        return 0 if outcomes["outcome"].isin(good).all() else 1
    if args.once:
        print(_table(wb.work()))
        return 0
    import time

    def report(outcome: Any, _done: int, _total: int) -> None:
        print(f"{outcome.run_id} {outcome.outcome} {outcome.status}", flush=True)

    while True:  # until Ctrl-C (exit 130) or the service stops the process
        if not len(wb.work(on_progress=report)):
            time.sleep(args.interval)


def _store(wb: ms.Workbench, args: argparse.Namespace) -> int:
    action = args.store_command
    if action == "info":
        info = wb.store_info()
        for key, value in info.items():
            shown = json.dumps(value) if isinstance(value, dict) else value
            print(f"{key}: {shown}")
        return 0 if info["integrity"] == "ok" else 1
    if action == "prune":
        return _prune(wb, args)
    if action == "copy":
        import master_sdk as ms

        with ms.Workbench.open(args.root, store=args.source) as source:
            print(source.copy_store(args.target))
        return 0
    if action == "export":
        report = wb.export_store(
            args.file, runs=args.runs, format=args.format, overwrite=args.force
        )
    else:
        report = wb.import_store(args.file, format=args.format, on_duplicate=args.on_duplicate)
    print(report)
    return 0


def _diff(wb: ms.Workbench, args: argparse.Namespace) -> int:
    import master_sdk as ms

    a = wb.get_run(args.run_a, recover=False)
    b = wb.get_run(args.run_b, recover=False)
    frame = ms.diff(a, b)
    if args.format == "json":
        records = json.loads(frame.to_json(orient="records"))
        print(json.dumps({"run_a": a.id, "run_b": b.id, "steps": records}, indent=1,
                         ensure_ascii=False))  # fmt: skip
        return 0
    out = frame[
        ["step_id", "status_a", "status_b", "copied_b", "output_changed", "changes",
         "tokens_delta", "cost_usd_delta", "duration_ms_delta"]
    ].copy()  # fmt: skip
    out["changes"] = out["changes"].map("; ".join)
    print(f"a: {a.id} ({a.status})\nb: {b.id} ({b.status})")
    print(_table(out))
    return 0


def _export_spans(wb: ms.Workbench, args: argparse.Namespace) -> int:
    report = wb.export_telemetry(args.otlp, since=args.since, runs=args.runs)
    print(
        f"exported {report['exported']} span(s) of {report['runs']} run(s)"
        + (f"; {report['failed']} failed" if report["failed"] else "")
    )
    return 1 if report["failed"] else 0


def _trace(wb: ms.Workbench, args: argparse.Namespace) -> int:
    if args.run_id == "export":  # run ids are hex: no run is called that
        return _export_spans(wb, args)
    run = wb.get_run(args.run_id)
    frame = run.trace()
    out = frame.copy()
    out["attrs"] = [None if a is None else json.dumps(a, ensure_ascii=False) for a in out["attrs"]]
    if args.format == "parquet":
        if not args.output:
            raise SystemExit("error: --format parquet needs --output FILE")
        out.to_parquet(args.output, index=False)
        print(f"wrote {len(out)} events to {args.output}")
        return 0
    if args.format == "table":
        columns = [
            "seq",
            "ts",
            "event",
            "step_id",
            "name",
            "status",
            "duration_ms",
            "tokens_in",
            "tokens_out",
            "cost_usd",
        ]
        text = _table(out[columns])
    elif args.format == "csv":
        text = out.to_csv(index=False)
    else:
        out["ts"] = out["ts"].map(lambda t: t.isoformat())
        records = json.loads(out.to_json(orient="records", date_format="iso"))
        text = json.dumps(records, indent=1, ensure_ascii=False)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(out)} events to {args.output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


# ---------------------------------------------------------------- vector memory


def _memory_parsers(sub: Any) -> None:
    """``master memory list|search|reembed``: vector collections from the shell."""
    memory = sub.add_parser("memory", help="vector collections: list, search, reembed")
    actions = memory.add_subparsers(dest="memory_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every collection: entries, model, stale or not")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    search = actions.add_parser("search", help="the entries most similar to QUERY")
    search.add_argument("ref", metavar="PRODUCT/COLLECTION")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("-k", type=int, default=5, help="how many hits (default 5)")
    search.add_argument(
        "--where", metavar="JSON", help='a metadata filter, e.g. \'{"category": "billing"}\''
    )
    search.add_argument("--format", choices=["table", "json"], default="table")
    reembed = actions.add_parser(
        "reembed", help="embed a collection's texts again with its declared model"
    )
    reembed.add_argument("ref", metavar="PRODUCT/COLLECTION")


def _memory_command(wb: ms.Workbench, args: argparse.Namespace) -> int:
    """Run ``master memory ACTION``; returns the exit code."""
    from master_sdk.errors import CollectionError

    action = args.memory_command
    if action == "list":
        frame = wb.collections()
        if args.format == "json":
            print(frame.to_json(orient="records"))
        elif frame.empty:
            print("no vector collections")
        else:
            print(frame.to_string(index=False))
        return 0
    collection = wb.memory(args.ref)
    if action == "reembed":
        count = collection.reembed()
        print(f"re-embedded {count} entr{'y' if count == 1 else 'ies'} of {args.ref}")
        return 0
    where = None
    if args.where is not None:
        try:
            where = json.loads(args.where)
        except json.JSONDecodeError as exc:
            raise CollectionError(
                f'--where: not JSON ({exc.msg}); e.g. \'{{"tag": "a"}}\''
            ) from None
        if not isinstance(where, dict):
            raise CollectionError("--where: give a JSON object of field conditions")
    hits = collection.search(args.query, k=args.k, where=where)
    frame = hits.frame()
    if args.format == "json":
        print(frame.to_json(orient="records"))
    elif frame.empty:
        print("no hits")
    else:
        print(frame.to_string(index=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``master`` console script."""
    args = _parser().parse_args(argv)
    from master_sdk.errors import MasterError

    out = _Output()
    try:
        return _run(args, out)
    except MasterError as exc:
        out.error(f"error: {exc}")
        return 1
    except SystemExit as exc:
        if isinstance(exc.code, str):
            out.error(exc.code)
            return 1
        raise
    except KeyboardInterrupt:
        out.error("error: interrupted")
        return 130
    except (RecursionError, MemoryError) as exc:
        out.error(f"error: the input is too large or too deeply nested ({type(exc).__name__})")
        return 1
    finally:
        out.flush()


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``master`` command: the workbench from a terminal.

Uses the public API only (law 9). Exit codes: 0 ok, 1 an error (one line on stderr
naming what to fix), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import master_sdk as ms


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="master", description="Run and inspect governed, durable flows."
    )
    parser.add_argument("--root", help="project folder (default: found upward from here)")
    parser.add_argument("--store", help="SQLite store file (default: storage/master.sqlite3)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("products", help="list products")
    flows = sub.add_parser("flows", help="list flows")
    flows.add_argument("product", nargs="?")
    sub.add_parser("validate", help="check every product and flow; non-zero exit on errors")

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
    runs.add_argument("--status")
    runs.add_argument("--product")
    runs.add_argument("--flow")

    show = sub.add_parser(
        "show", help="show one run (retrying an interrupted idempotent tool, as get_run does)"
    )
    show.add_argument("run_id", metavar="RUN")
    show.add_argument(
        "--no-recover", action="store_true", help="only read the run; never run a step"
    )

    approve = sub.add_parser("approve", help="approve a paused run")
    approve.add_argument("run_id", metavar="RUN")
    approve.add_argument("--comment")
    approve.add_argument("--by")
    approve.add_argument("--allow-flow-change", action="store_true")

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
    abort = sub.add_parser("abort", help="end a run as failed")
    abort.add_argument("run_id", metavar="RUN")
    abort.add_argument("--reason")
    abort.add_argument("--by")

    trace = sub.add_parser("trace", help="a run's trace events")
    trace.add_argument("run_id", metavar="RUN")
    trace.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    trace.add_argument("--output", "-o", help="write to this file (required for parquet)")

    schema = sub.add_parser("schema", help="print the JSON Schema of a spec file")
    schema.add_argument("kind", choices=["flow", "manifest", "product"])

    store = sub.add_parser("store", help="the run store: info, export, import")
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
    return parser


def _json_arg(text: str, what: str) -> Any:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise SystemExit(f"error: cannot read {what} file {text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(
            f"error: {what} is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None


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
            data[key] = _json_arg(raw, f"--input {key}")
        else:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"error: --input expects KEY=VALUE, got {item!r}")
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
    if run.status == "interrupted":
        lines.append(
            f"  next: master retry {run.id} | master skip {run.id} | master abort {run.id}"
        )
    return "\n".join(lines)


def _table(frame: Any) -> str:
    return str(frame.to_string(index=False)) if len(frame) else "(none)"


def _run(args: argparse.Namespace) -> int:
    import master_sdk as ms

    if args.command == "schema":
        print(json.dumps(ms.Workbench.spec_schema(args.kind), indent=2))
        return 0
    wb = ms.Workbench.open(args.root, store=args.store)
    try:
        return _dispatch(wb, args)
    finally:
        wb.close()


def _dispatch(wb: ms.Workbench, args: argparse.Namespace) -> int:
    command = args.command
    if command == "products":
        for name in wb.products():
            print(name)
        return 0
    if command == "flows":
        for ref in wb.flows(args.product):
            print(ref)
        return 0
    if command == "validate":
        problems = wb.validate()
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"ok: {len(wb.flows())} flow(s) in {len(wb.products())} product(s)")
        return 0
    if command == "run":
        run = wb.run(args.ref, _inputs(args), by=args.by)
        print(_describe(run))
        return 0 if run.status not in ("failed", "blocked") else 1
    if command == "runs":
        frame = wb.runs(product=args.product, flow=args.flow, status=args.status)
        columns = ["run_id", "product", "flow", "status", "waiting_step", "updated_at"]
        print(_table(frame[columns]))
        return 0
    if command == "trace":
        return _trace(wb, args)
    if command == "store":
        return _store(wb, args)
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
    return 0 if run.status not in ("failed", "blocked") or command == "abort" else 1


def _store(wb: ms.Workbench, args: argparse.Namespace) -> int:
    action = args.store_command
    if action == "info":
        info = wb.store_info()
        for key, value in info.items():
            shown = json.dumps(value) if isinstance(value, dict) else value
            print(f"{key}: {shown}")
        return 0 if info["integrity"] == "ok" else 1
    if action == "export":
        report = wb.export_store(
            args.file, runs=args.runs, format=args.format, overwrite=args.force
        )
    else:
        report = wb.import_store(args.file, format=args.format, on_duplicate=args.on_duplicate)
    print(report)
    return 0


def _trace(wb: ms.Workbench, args: argparse.Namespace) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``master`` console script."""
    args = _parser().parse_args(argv)
    from master_sdk.errors import MasterError

    try:
        return _run(args)
    except MasterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

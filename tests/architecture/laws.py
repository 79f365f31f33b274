"""Static checks for the architecture laws of DESIGN.md §3.

Each ``check_law<N>(root)`` parses every ``.py`` file under ``root/master_sdk`` and
``root/products`` (a missing directory simply has nothing to scan) and returns the
:class:`Violation` s it finds, sorted. Nothing is imported or executed: the checks read
the syntax tree only, so they also work on a half-written or broken tree.

What counts as an import: ``import x``, ``from x import y`` (relative forms resolved to the
absolute module, ``from ..memory import store`` in ``master_sdk/notebook/views.py`` being
``master_sdk.memory.store``), imports inside functions, and ``importlib.import_module("x")``
or ``__import__("x")`` with a literal name.

Imports under ``if TYPE_CHECKING:`` are exempt from law 3 only: a type-only import of a
provider class makes no model call, which is what law 3 is about. Laws 5 and 9 are about
what code depends on (SQLite specifics; engine internals), and a type annotation is such a
dependency, so for them, as for every other law, a type-only import counts.

Run as a script to print the violations of a tree: ``python tests/architecture/laws.py [root]``.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from master_sdk.authoring import CONTROL_FIELDS as RUNTIME_CONTROL_FIELDS

LAWS: Mapping[int, str] = {
    0: "every checked file parses",
    1: "environment read only in master_sdk/config/loader.py",
    2: "vendor model SDKs and HTTP clients only in master_sdk/models/providers/",
    3: "model calls only through master_sdk/models/router.py",
    4: "tool functions invoked only by master_sdk/tools/executor.py",
    5: "persistence only in master_sdk/memory/",
    6: "products import only master_sdk.authoring",
    7: "agents are stateless",
    8: "agent outputs are data",
    9: "notebook, HTTP server and CLI use the public API only",
}

SCANNED_DIRS = ("master_sdk", "products")

ENV_READERS = frozenset(
    ["os.environ", "os.environb", "os.getenv", "os.getenvb", "os.putenv", "os.unsetenv"]
)
ENV_PACKAGES = ("dotenv", "environs", "decouple")
VENDOR_PACKAGES = (
    "openai",
    "anthropic",
    "httpx",
    "httpx2",
    "requests",
    "aiohttp",
    "urllib.request",
    "http.client",
    "urllib3",
    "litellm",
    "mistralai",
    "cohere",
    "google.genai",
    "google.generativeai",
)
PERSISTENCE_PACKAGES = (
    "sqlite3",
    "adbc_driver_sqlite",
    "shelve",
    "dbm",
    "aiosqlite",
    "apsw",
    "pysqlite3",
    "sqlalchemy",
    "psycopg",
    "psycopg2",
    "asyncpg",
    "duckdb",
)
# Inside an agent, pickle counts too: it is how objects get written to disk.
AGENT_FORBIDDEN_PACKAGES = (*PERSISTENCE_PACKAGES, "pickle")
PROVIDERS = "master_sdk.models.providers"
# The public fakes in master_sdk.testing re-export these two; neither reaches a network.
TESTING_PROVIDERS = (f"{PROVIDERS}.fake", f"{PROVIDERS}.replay")
# Files that may call a registered function's ``.fn``: tools, and the agent step runner.
FN_CALLERS = frozenset({"master_sdk/tools/executor.py", "master_sdk/orchestrator/agents.py"})
# Callables that run a function handed to them (partial and Thread run it later).
INVOKERS = frozenset(
    [
        "Process",
        "Thread",
        "Timer",
        "apply",
        "apply_async",
        "call_at",
        "call_later",
        "call_soon",
        "call_soon_threadsafe",
        "map",
        "partial",
        "run",
        "run_in_executor",
        "starmap",
        "submit",
        "to_thread",
    ]
)
# Sub-packages and modules of master_sdk named in DESIGN.md §2; the tree adds any others.
KNOWN_SUBMODULES = frozenset(
    [
        "authoring",
        "cli",
        "config",
        "contracts",
        "errors",
        "governance",
        "memory",
        "models",
        "notebook",
        "orchestrator",
        "products",
        "server",
        "testing",
        "tools",
        "tracing",
        "workbench",
    ]
)
AUTHORING = "master_sdk.authoring"
DECORATORS = {
    f"{AUTHORING}.tool": "tool",
    "master_sdk.tool": "tool",
    f"{AUTHORING}.agent": "agent",
    "master_sdk.agent": "agent",
}
AGENT_OUTPUT = frozenset({f"{AUTHORING}.AgentOutput", "master_sdk.AgentOutput"})
# Control-field names (normalised: lower case, no separators): one list, the runtime's.
CONTROL_FIELDS = RUNTIME_CONTROL_FIELDS
FIELD_ALIASES = frozenset({"alias", "validation_alias", "serialization_alias"})
FILE_WRITERS = frozenset(
    ["write_text", "write_bytes", "touch", "mkdir", "unlink", "rmdir", "symlink_to", "hardlink_to"]
)
FILE_OPENERS = frozenset({"io.open", "os.open", "codecs.open"})
# Methods that change the object they are called on.
MUTATORS = frozenset(
    [
        "__delitem__",
        "__setitem__",
        "add",
        "append",
        "appendleft",
        "clear",
        "difference_update",
        "discard",
        "extend",
        "extendleft",
        "insert",
        "intersection_update",
        "pop",
        "popitem",
        "popleft",
        "put",
        "put_nowait",
        "remove",
        "reverse",
        "rotate",
        "setdefault",
        "sort",
        "symmetric_difference_update",
        "update",
    ]
)


@dataclass(frozen=True, order=True)
class Violation:
    """One breach of a law, at one line of one file (``file`` is relative to the root)."""

    law: int
    file: str
    line: int
    detail: str

    def __str__(self) -> str:
        return f"law {self.law} ({LAWS[self.law]}): {self.file}:{self.line} {self.detail}"


@dataclass(frozen=True)
class ImportRecord:
    """One import, its targets resolved to absolute dotted names.

    ``from a import b, c`` has targets ``a.b`` and ``a.c`` (``b`` may be a module or a
    name, so laws test the longest form); ``from a import *`` has target ``a.*``.
    """

    line: int
    targets: tuple[str, ...]
    written: str
    rewritten: bool  # relative or dynamic: the message shows how it was written
    type_checking: bool
    escapes: bool  # a relative import climbing above the top-level folder


@dataclass(frozen=True)
class SourceFile:
    """A parsed file with its imports and the names those imports bind."""

    rel: str
    module: str
    is_package: bool
    tree: ast.Module = field(repr=False)
    # Every node of the tree, walked once and shared by the laws.
    nodes: tuple[ast.AST, ...] = field(repr=False)
    imports: tuple[ImportRecord, ...] = field(repr=False)
    bindings: Mapping[str, str] = field(repr=False)

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.module if self.is_package else self.module.rpartition(".")[0]


@dataclass(frozen=True)
class Sources:
    """Every scanned file of a root, parsed once; files that do not parse are in ``broken``."""

    root: Path
    files: tuple[SourceFile, ...]
    broken: tuple[Violation, ...]

    def __repr__(self) -> str:
        return f"Sources({str(self.root)!r}, {len(self.files)} files, {len(self.broken)} broken)"

    def under(self, top: str) -> Iterator[SourceFile]:
        """The files under the top-level folder ``top``."""
        return (src for src in self.files if src.rel.startswith(top + "/"))

    @cached_property
    def products(self) -> _Products:
        """The index of product tools, agents and classes, built once for laws 4, 7 and 8."""
        return _Products(self)


# --- reading the tree -------------------------------------------------------------------


def scanned_files(root: Path) -> list[str]:
    """The files the checks read, relative to ``root``, in order."""
    found: list[str] = []
    for top in SCANNED_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            parts = path.relative_to(root).parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            found.append("/".join(parts))
    return sorted(found)


def load_sources(root: Path) -> Sources:
    """Parse every scanned file under ``root``."""
    files: list[SourceFile] = []
    broken: list[Violation] = []
    for rel in scanned_files(root):
        try:
            tree = ast.parse((root / rel).read_bytes(), filename=rel)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None) or 1
            broken.append(Violation(0, rel, line, f"cannot be parsed: {exc}"))
            continue
        parts = rel.removesuffix(".py").split("/")
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        package = module if is_package else module.rpartition(".")[0]
        nodes = tuple(ast.walk(tree))
        bindings = _bindings(nodes, package)
        imports = tuple(_imports(nodes, package, bindings))
        files.append(SourceFile(rel, module, is_package, tree, nodes, imports, bindings))
    return Sources(root, tuple(files), tuple(broken))


def _resolve(package: str, level: int, module: str | None) -> str | None:
    """The absolute module of ``from <level dots><module> import``; None if it escapes."""
    if level == 0:
        return module or ""
    parts = package.split(".") if package else []
    drop = level - 1
    if drop >= len(parts):
        return None
    base = parts[: len(parts) - drop]
    return ".".join([*base, module] if module else base)


def _bindings(nodes: Iterable[ast.AST], package: str) -> dict[str, str]:
    """Local name -> the dotted name an import binds it to, for every import in the file."""
    bound: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    head = alias.name.partition(".")[0]
                    bound[head] = head
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.level, node.module)
            if base is None:
                continue
            for alias in node.names:
                if alias.name != "*":
                    bound[alias.asname or alias.name] = _join(base, alias.name)
    return bound


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def _type_checking_nodes(nodes: Iterable[ast.AST]) -> set[int]:
    ids: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.If) and _names_type_checking(node.test):
            for stmt in node.body:
                ids.update(id(inner) for inner in ast.walk(stmt))
    return ids


def _names_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    nodes: tuple[ast.AST, ...], package: str, bindings: Mapping[str, str]
) -> Iterator[ImportRecord]:
    guarded = _type_checking_nodes(nodes)
    for node in nodes:
        record = import_record(node, package, bindings, type_checking=id(node) in guarded)
        if record is not None:
            yield record


def import_record(
    node: ast.AST, package: str, bindings: Mapping[str, str], *, type_checking: bool = False
) -> ImportRecord | None:
    """The import made by ``node``, if it is an import statement or a literal dynamic import."""
    if isinstance(node, ast.Import):
        targets = tuple(alias.name for alias in node.names)
        return ImportRecord(node.lineno, targets, ast.unparse(node), False, type_checking, False)
    if isinstance(node, ast.ImportFrom):
        base = _resolve(package, node.level, node.module)
        written = ast.unparse(node)
        if base is None:
            return ImportRecord(node.lineno, (), written, True, type_checking, True)
        targets = tuple(_join(base, alias.name) for alias in node.names)
        return ImportRecord(node.lineno, targets, written, node.level > 0, type_checking, False)
    if isinstance(node, ast.Call) and node.args:
        callee = _dotted(node.func, bindings)
        if callee is None and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            callee = "__import__"
        first = node.args[0]
        if callee in {"importlib.import_module", "__import__"} and isinstance(first, ast.Constant):
            name = first.value
            if isinstance(name, str) and name:
                level = len(name) - len(name.lstrip("."))
                target = _resolve(package, level, name.lstrip(".") or None)
                written = ast.unparse(node)
                if target is None:
                    return ImportRecord(node.lineno, (), written, True, type_checking, True)
                return ImportRecord(node.lineno, (target,), written, True, type_checking, False)
    return None


def _dotted(node: ast.expr, bindings: Mapping[str, str]) -> str | None:
    """``a.b.c`` with ``a`` replaced by what an import bound it to; None if ``a`` is not."""
    if isinstance(node, ast.Name):
        return bindings.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, bindings)
        return f"{base}.{node.attr}" if base else None
    return None


def _under(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def _under_any(target: str, prefixes: Iterable[str]) -> bool:
    return any(_under(target, prefix) for prefix in prefixes)


def _import_violations(
    src: SourceFile,
    law: int,
    offends: Callable[[str], bool],
    *,
    exempt_type_checking: bool = False,
) -> Iterator[Violation]:
    for record in src.imports:
        if exempt_type_checking and record.type_checking:
            continue
        bad = [target for target in record.targets if offends(target)]
        if bad:
            yield Violation(law, src.rel, record.line, _imports_detail(record, bad))


def _imports_detail(record: ImportRecord, bad: list[str]) -> str:
    detail = "imports " + ", ".join(bad)
    return f"{detail} (written `{record.written}`)" if record.rewritten else detail


# --- laws 1, 2, 3, 5: who may import what -----------------------------------------------


def _law1(sources: Sources) -> Iterator[Violation]:
    def offends(target: str) -> bool:
        return target in ENV_READERS or target == "os.*" or _under_any(target, ENV_PACKAGES)

    for src in sources.files:
        if src.rel == "master_sdk/config/loader.py":
            continue
        yield from _import_violations(src, 1, offends)
        for node in src.nodes:
            used: str | None = None
            if isinstance(node, ast.Attribute):
                used = _dotted(node, src.bindings)
            elif _is_call_to(node, "getattr"):
                used = _getattr_target(node, src.bindings)
            if used in ENV_READERS and isinstance(node, ast.expr):
                written = ast.unparse(node)
                suffix = "" if written == used else f" (written `{written}`)"
                yield Violation(1, src.rel, node.lineno, f"uses {used}{suffix}")


def _getattr_target(node: ast.AST, bindings: Mapping[str, str]) -> str | None:
    """``getattr(os, "environ")`` as ``os.environ``, when both arguments are plain."""
    if not isinstance(node, ast.Call) or len(node.args) < 2:
        return None
    base = _dotted(node.args[0], bindings)
    name = node.args[1]
    if base and isinstance(name, ast.Constant) and isinstance(name.value, str):
        return f"{base}.{name.value}"
    return None


def _is_call_to(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _law2(sources: Sources) -> Iterator[Violation]:
    for src in sources.files:
        if src.rel.startswith("master_sdk/models/providers/"):
            continue
        yield from _import_violations(src, 2, lambda t: _under_any(t, VENDOR_PACKAGES))


def _law3(sources: Sources) -> Iterator[Violation]:
    def anywhere(target: str) -> bool:
        return _under(target, PROVIDERS)

    def in_testing(target: str) -> bool:
        return _under(target, PROVIDERS) and not _under_any(target, TESTING_PROVIDERS)

    for src in sources.files:
        if src.rel == "master_sdk/models/router.py" or src.rel.startswith(
            "master_sdk/models/providers/"
        ):
            continue
        offends = in_testing if src.rel == "master_sdk/testing.py" else anywhere
        yield from _import_violations(src, 3, offends, exempt_type_checking=True)


def _law5(sources: Sources) -> Iterator[Violation]:
    for src in sources.files:
        if src.rel.startswith("master_sdk/memory/"):
            continue
        yield from _import_violations(src, 5, lambda t: _under_any(t, PERSISTENCE_PACKAGES))


# --- products: what is a tool, an agent, an output model ---------------------------------


@dataclass
class _ProductModule:
    src: SourceFile
    product: str
    functions: dict[str, tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = field(
        default_factory=dict
    )
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    top_names: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Symbol:
    kind: str  # "tool", "agent" or "class"
    module: _ProductModule
    name: str


class _Products:
    """Every product module, with its @tool / @agent functions and classes, for resolution."""

    def __init__(self, sources: Sources) -> None:
        self.modules: dict[str, _ProductModule] = {}
        for src in sources.under("products"):
            parts = src.rel.split("/")
            mod = _ProductModule(src, parts[1] if len(parts) > 2 else "")
            for stmt in src.tree.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                    kind = _decorator_kind(stmt, src.bindings)
                    if kind:
                        mod.functions[stmt.name] = (kind, stmt)
                elif isinstance(stmt, ast.ClassDef):
                    mod.classes[stmt.name] = stmt
            mod.top_names = _module_level_names(src.tree)
            self.modules[src.module] = mod

    def resolve(self, mod: _ProductModule, expr: ast.expr) -> _Symbol | None:
        """What ``expr`` names among the product's tools, agents and classes, if anything."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            try:
                expr = ast.parse(expr.value, mode="eval").body
            except (SyntaxError, ValueError):  # ValueError: a null byte in the string
                return None
        if isinstance(expr, ast.Name) and expr.id in mod.functions:
            return _Symbol(mod.functions[expr.id][0], mod, expr.id)
        if isinstance(expr, ast.Name) and expr.id in mod.classes:
            return _Symbol("class", mod, expr.id)
        if isinstance(expr, ast.Name) and expr.id in mod.src.bindings:
            owner, _, name = mod.src.bindings[expr.id].rpartition(".")
        elif isinstance(expr, ast.Attribute):
            owner = _dotted(expr.value, mod.src.bindings) or ""
            name = expr.attr
        else:
            return None
        other = self.modules.get(owner) or self.modules.get(f"products.{mod.product}.{owner}")
        if other is None or other.product != mod.product:
            return None
        if name in other.functions:
            return _Symbol(other.functions[name][0], other, name)
        if name in other.classes:
            return _Symbol("class", other, name)
        return None

    def agents(self) -> Iterator[tuple[_ProductModule, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for mod in self.modules.values():
            for kind, fn in mod.functions.values():
                if kind == "agent":
                    yield mod, fn

    def is_output_model(self, sym: _Symbol, seen: frozenset[str] = frozenset()) -> bool:
        """Whether a product class derives from AgentOutput, directly or via product classes."""
        key = f"{sym.module.src.module}.{sym.name}"
        if key in seen:
            return False
        for base in sym.module.classes[sym.name].bases:
            if _names_agent_output(base, sym.module):
                return True
            parent = self.resolve(sym.module, base)
            if parent and parent.kind == "class" and self.is_output_model(parent, seen | {key}):
                return True
        return False


def _decorator_kind(fn: ast.FunctionDef | ast.AsyncFunctionDef, bindings: Mapping[str, str]) -> str:
    for decorator in fn.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        kind = DECORATORS.get(_dotted(target, bindings) or "")
        if kind:
            return kind
    return ""


def _names_agent_output(base: ast.expr, mod: _ProductModule) -> bool:
    if _dotted(base, mod.src.bindings) in AGENT_OUTPUT:
        return True
    # An unimported bare name cannot run, but it states the intent; only a product's own
    # class called AgentOutput is not the real one.
    return (
        isinstance(base, ast.Name)
        and base.id == "AgentOutput"
        and base.id not in mod.src.bindings
        and base.id not in mod.classes
    )


def _module_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(stmt.name)
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update(_alias_names(node))
    return names


def _alias_names(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    for alias in node.names:
        if alias.name != "*":
            yield alias.asname or alias.name.partition(".")[0]


def _local_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names bound inside ``fn`` (parameters included), minus those declared global."""
    names: set[str] = set()
    declared: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif node is not fn and isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update(_alias_names(node))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            declared.update(node.names)
    return names - declared


def _body_nodes(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    for stmt in fn.body:
        yield from ast.walk(stmt)


def _root_name(expr: ast.expr) -> str | None:
    while isinstance(expr, ast.Attribute | ast.Subscript):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def _called(call: ast.Call) -> ast.expr:
    """The function a call runs, seeing through ``x.__call__(...)``."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "__call__":
        return func.value
    return func


# --- law 4: only the executor (and the agent step runner) call registered functions ------


def _is_fn_attr(expr: ast.expr) -> bool:
    return (
        isinstance(expr, ast.Attribute)
        and expr.attr == "fn"
        and not (isinstance(expr.value, ast.Name) and expr.value.id == "self")
    )


def _fn_aliases(nodes: Iterable[ast.AST]) -> set[str]:
    aliases: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Assign) and _is_fn_attr(node.value):
            aliases.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif (
            isinstance(node, ast.AnnAssign | ast.NamedExpr)
            and node.value is not None
            and _is_fn_attr(node.value)
            and isinstance(node.target, ast.Name)
        ):
            aliases.add(node.target.id)
    return aliases


def _fn_calls(src: SourceFile) -> Iterator[Violation]:
    where = "only master_sdk/tools/executor.py and master_sdk/orchestrator/agents.py call .fn"
    aliases = _fn_aliases(src.nodes)

    def is_fn(expr: ast.expr) -> bool:
        return _is_fn_attr(expr) or (isinstance(expr, ast.Name) and expr.id in aliases)

    for node in src.nodes:
        if not isinstance(node, ast.Call):
            continue
        func = _called(node)
        if is_fn(func):
            text = ast.unparse(func)
            what = text if _is_fn_attr(func) else f"{text} (bound to a .fn)"
            yield Violation(4, src.rel, node.lineno, f"calls {what}(...) directly; {where}")
            continue
        invoker = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if isinstance(node.func, ast.Name):
            invoker = node.func.id
        if invoker not in INVOKERS:
            continue
        for arg in [*node.args, *(kw.value for kw in node.keywords)]:
            if is_fn(arg):
                detail = f"hands {ast.unparse(arg)} to {ast.unparse(node.func)}(...); {where}"
                yield Violation(4, src.rel, node.lineno, detail)


def _law4(sources: Sources) -> Iterator[Violation]:
    for src in sources.files:
        if src.rel not in FN_CALLERS:
            yield from _fn_calls(src)
    products = sources.products
    for mod in products.modules.values():
        for node in mod.src.nodes:
            if isinstance(node, ast.Call):
                sym = products.resolve(mod, _called(node))
                if sym and sym.kind == "tool":
                    detail = (
                        f"calls tool {sym.name} directly; a flow step runs it through "
                        "master_sdk/tools/executor.py"
                    )
                    yield Violation(4, mod.src.rel, node.lineno, detail)


# --- law 6: products see master_sdk.authoring only --------------------------------------


def _law6(sources: Sources) -> Iterator[Violation]:
    for src in sources.under("products"):
        parts = src.rel.split("/")
        own = parts[1] if len(parts) > 2 else None

        def offends(target: str, own: str | None = own) -> bool:
            if _under(target, "master_sdk"):
                return not _under(target, AUTHORING)
            if _under(target, "products"):
                return target.split(".")[1:2] != [own]
            return False

        for record in src.imports:
            if record.escapes:
                detail = f"imports from above the products folder (written `{record.written}`)"
                yield Violation(6, src.rel, record.line, detail)
        yield from _import_violations(src, 6, offends)


# --- law 7: agents hold no state and run nothing themselves ------------------------------


def _law7(sources: Sources) -> Iterator[Violation]:
    products = sources.products
    for mod, fn in products.agents():
        yield from _agent_state_violations(products, mod, fn)


def _agent_state_violations(
    products: _Products, mod: _ProductModule, fn: ast.FunctionDef | ast.AsyncFunctionDef
) -> Iterator[Violation]:
    rel, bindings = mod.src.rel, mod.src.bindings
    local = _local_names(fn)
    shared = mod.top_names - local

    def found(node: ast.stmt | ast.expr, what: str) -> Violation:
        return Violation(7, rel, node.lineno, f"agent {fn.name} {what}")

    for node in _body_nodes(fn):
        if isinstance(node, ast.Global | ast.Nonlocal):
            keyword = "global" if isinstance(node, ast.Global) else "nonlocal"
            yield found(node, f"declares {keyword} {', '.join(node.names)}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            record = import_record(node, mod.src.package, bindings)
            imported = record.targets if record else ()
            bad = [t for t in imported if _under_any(t, AGENT_FORBIDDEN_PACKAGES)]
            if bad:
                yield found(node, f"imports {', '.join(bad)}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            used = _dotted(node, bindings)
            if node.value.id not in local and used and _under_any(used, AGENT_FORBIDDEN_PACKAGES):
                yield found(node, f"uses {used}")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            verb = "deletes" if isinstance(node, ast.Delete) else "assigns to"
            for target in targets:
                if isinstance(target, ast.Attribute | ast.Subscript) and (
                    _root_name(target) in shared
                ):
                    yield found(node, f"{verb} module-level {ast.unparse(target)}")
        elif isinstance(node, ast.Call):
            problems = _agent_call_problems(products, mod, node, local)
            yield from (found(node, what) for what in problems)


def _agent_call_problems(
    products: _Products, mod: _ProductModule, call: ast.Call, local: set[str]
) -> Iterator[str]:
    """What is wrong with a call made inside an agent's body, if anything."""
    func = _called(call)
    # ``echo.fn(...)`` runs the tool just as ``echo(...)`` does.
    if isinstance(func, ast.Attribute) and func.attr == "fn":
        func = func.value
    shared = mod.top_names - local
    if not (isinstance(func, ast.Name) and func.id in local):
        sym = products.resolve(mod, func)
        if sym and sym.kind in {"tool", "agent"}:
            yield f"calls {sym.kind} {sym.name}; only the orchestrator runs steps"
    callee = _dotted(call.func, mod.src.bindings)
    if (
        isinstance(call.func, ast.Name)
        and call.func.id == "open"
        and "open" not in local
        and "open" not in mod.src.bindings
    ) or callee in FILE_OPENERS:
        yield f"opens a file with {ast.unparse(call.func)}(...)"
    elif isinstance(call.func, ast.Attribute):
        attr, owner = call.func.attr, call.func.value
        if attr in FILE_WRITERS or (attr == "open" and _makes_path(owner)):
            yield f"touches the file system with {ast.unparse(call.func)}(...)"
        elif attr in MUTATORS and _root_name(owner) in shared:
            yield f"mutates module-level {ast.unparse(owner)} with .{attr}(...)"
    elif (
        isinstance(call.func, ast.Name)
        and call.func.id in {"setattr", "delattr"}
        and call.args
        and _root_name(call.args[0]) in shared
    ):
        yield f"mutates module-level {ast.unparse(call.args[0])} with {call.func.id}(...)"


def _makes_path(expr: ast.expr) -> bool:
    if not isinstance(expr, ast.Call):
        return False
    func = expr.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return isinstance(name, str) and name.endswith("Path")


# --- law 8: agent outputs are AgentOutput models without control fields ------------------


def _law8(sources: Sources) -> Iterator[Violation]:
    products = sources.products
    for mod, fn in products.agents():
        annotation = fn.returns
        if annotation is None:
            detail = f"agent {fn.name} has no return annotation; it must name an AgentOutput model"
            yield Violation(8, mod.src.rel, fn.lineno, detail)
            continue
        sym = products.resolve(mod, annotation)
        written = ast.unparse(annotation)
        if sym is None or sym.kind != "class":
            detail = (
                f"agent {fn.name} returns {written}, which is not an AgentOutput model "
                "defined in the product"
            )
            yield Violation(8, mod.src.rel, annotation.lineno, detail)
        elif not products.is_output_model(sym):
            detail = f"agent {fn.name} returns {written}, which does not derive from AgentOutput"
            yield Violation(8, mod.src.rel, annotation.lineno, detail)
    yield from _control_fields(products)


def _is_control(name: str) -> bool:
    return re.sub(r"[\s_\-]", "", name).lower() in CONTROL_FIELDS


def _control_fields(products: _Products) -> Iterator[Violation]:
    """Control-named fields of every AgentOutput model and of the models nested in them."""
    queue: list[tuple[_Symbol, str]] = []
    for mod in products.modules.values():
        for name in mod.classes:
            sym = _Symbol("class", mod, name)
            if products.is_output_model(sym):
                queue.append((sym, ""))
    seen: set[tuple[str, str]] = set()
    while queue:
        sym, via = queue.pop(0)
        key = (sym.module.src.module, sym.name)
        if key in seen:
            continue
        seen.add(key)
        owner = f"{sym.name}, nested in {via}," if via else f"{sym.name} (an AgentOutput)"
        for stmt in sym.module.classes[sym.name].body:
            for name, line, annotation in _declared_fields(stmt):
                if _is_control(name):
                    detail = f"{owner} declares control field {name!r}"
                    yield Violation(8, sym.module.src.rel, line, detail)
                for inner in _annotation_classes(products, sym.module, annotation):
                    queue.append((inner, f"{sym.name}.{name}"))


def _declared_fields(stmt: ast.stmt) -> Iterator[tuple[str, int, ast.expr | None]]:
    """(name, line, annotation) for each field a class-body statement declares or aliases."""
    value: ast.expr | None = None
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        yield stmt.target.id, stmt.lineno, stmt.annotation
        value = stmt.value
    elif isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if isinstance(target, ast.Name):
                yield target.id, stmt.lineno, None
        value = stmt.value
    if isinstance(value, ast.Call):
        for keyword in value.keywords:
            if keyword.arg in FIELD_ALIASES and isinstance(keyword.value, ast.Constant):
                alias = keyword.value.value
                if isinstance(alias, str):
                    yield alias, keyword.value.lineno, None


def _annotation_classes(
    products: _Products, mod: _ProductModule, annotation: ast.expr | None
) -> Iterator[_Symbol]:
    if annotation is None:
        return
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name | ast.Attribute | ast.Constant):
            sym = products.resolve(mod, node)
            if sym and sym.kind == "class":
                yield sym


# --- law 9: the notebook layer and the CLI stand on the public API -----------------------


def _submodules(root: Path) -> set[str]:
    found = set(KNOWN_SUBMODULES)
    package = root / "master_sdk"
    if package.is_dir():
        for child in package.iterdir():
            if child.suffix == ".py" and child.stem != "__init__":
                found.add(child.stem)
            elif child.is_dir() and not child.name.startswith((".", "__")):
                found.add(child.name)
    return found


def _law9(sources: Sources) -> Iterator[Violation]:
    submodules = _submodules(sources.root)
    for src in sources.files:
        in_notebook = src.rel.startswith("master_sdk/notebook/")
        in_server = src.rel.startswith("master_sdk/server/")
        is_cli = src.rel == "master_sdk/cli.py"
        if not (in_notebook or in_server or is_cli):
            continue

        def offends(
            target: str, in_notebook: bool = in_notebook, in_server: bool = in_server
        ) -> bool:
            parts = target.split(".")
            if parts[0] != "master_sdk" or len(parts) == 1 or parts[1] == "errors":
                return False
            if parts[1] == "notebook" and in_notebook:
                return False
            # the HTTP server is a front end like the notebook; the CLI's ``serve`` starts it
            if parts[1] == "server" and not in_notebook:
                return False
            # the CLI's ``test`` command: a user-facing package that drives notebooks
            # through kernels and the public API (it is no engine internal)
            if parts[1] == "notebook_tests" and not (in_notebook or in_server):
                return False
            # ``from master_sdk import Workbench`` names the public API, not a module.
            return not (len(parts) == 2 and parts[1] not in submodules)

        yield from _import_violations(src, 9, offends)
        for node in src.nodes:
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and src.bindings.get(node.value.id) == "master_sdk"
                and node.attr in submodules
                and offends(f"master_sdk.{node.attr}")
            ):
                detail = f"uses master_sdk.{node.attr} (written `{ast.unparse(node)}`)"
                yield Violation(9, src.rel, node.lineno, detail)


# --- entry points ---------------------------------------------------------------------------


def _law0(sources: Sources) -> Iterator[Violation]:
    return iter(sources.broken)


_RULES: Mapping[int, Callable[[Sources], Iterable[Violation]]] = {
    0: _law0,
    1: _law1,
    2: _law2,
    3: _law3,
    4: _law4,
    5: _law5,
    6: _law6,
    7: _law7,
    8: _law8,
    9: _law9,
}


def check(law: int, root: Path) -> list[Violation]:
    """The violations of one law (0: files that do not parse) under ``root``, sorted."""
    return check_loaded(law, load_sources(root))


def check_loaded(law: int, sources: Sources) -> list[Violation]:
    """:func:`check` on a tree already parsed by :func:`load_sources`, to parse it once."""
    return sorted(set(_RULES[law](sources)))


def check_all(root: Path) -> list[Violation]:
    """The violations of every law under ``root``, parsing each file once, sorted."""
    sources = load_sources(root)
    return sorted({v for rule in _RULES.values() for v in rule(sources)})


def check_parse(root: Path) -> list[Violation]:
    """Files that do not parse, so that no law can be checked on them."""
    return check(0, root)


def check_law1(root: Path) -> list[Violation]:
    """Environment reads outside ``master_sdk/config/loader.py``.

    Flags ``os.environ`` / ``os.environb`` / ``os.getenv`` / ``os.getenvb`` / ``os.putenv`` /
    ``os.unsetenv`` used as attributes (``os`` under any alias, or through
    ``getattr(os, "environ")``), imported by name (``from os import environ``, ``from os
    import *``), and any import of ``dotenv``, ``environs`` or ``decouple``.
    """
    return check(1, root)


def check_law2(root: Path) -> list[Violation]:
    """Vendor model SDKs and HTTP clients imported outside ``master_sdk/models/providers/``.

    The packages are listed in ``VENDOR_PACKAGES`` (openai, anthropic, httpx, requests,
    aiohttp, urllib.request, http.client, ...); products are covered too.
    """
    return check(2, root)


def check_law3(root: Path) -> list[Violation]:
    """Imports of ``master_sdk.models.providers`` other than by the router.

    Allowed in ``master_sdk/models/router.py`` and in the providers themselves (a replay
    provider wraps another); ``master_sdk/testing.py`` may import the ``fake`` and
    ``replay`` providers to hand them to users. Type-only imports are exempt.
    """
    return check(3, root)


def check_law4(root: Path) -> list[Violation]:
    """Registered tool (and agent) functions run outside the executor.

    A ``ToolSpec`` / ``AgentSpec`` keeps its function in ``.fn``. Outside
    ``master_sdk/tools/executor.py`` and ``master_sdk/orchestrator/agents.py`` (the agent step
    runner), flags every call of ``<expr>.fn(...)`` or ``<expr>.fn.__call__(...)`` where
    ``<expr>`` is not ``self``, every call of a name assigned from such an ``.fn``, and such
    an ``.fn`` handed to a function that runs it (``partial``, ``Thread(target=...)``,
    ``run_in_executor``, ``to_thread``, ``submit``, ``map``, ...; see ``INVOKERS``). In
    products, also flags any call of a ``@tool`` function of the same product.
    """
    return check(4, root)


def check_law5(root: Path) -> list[Violation]:
    """SQLite or other persistence imported outside ``master_sdk/memory/``.

    The packages are listed in ``PERSISTENCE_PACKAGES`` (sqlite3, adbc_driver_sqlite, shelve,
    dbm, sqlalchemy, psycopg, ...); products are covered too.
    """
    return check(5, root)


def check_law6(root: Path) -> list[Violation]:
    """Product imports of master_sdk beyond ``master_sdk.authoring``, or of other products.

    ``import master_sdk`` and ``from master_sdk import X`` (X other than ``authoring``) are
    flagged, as is a relative import that climbs out of the products folder.
    """
    return check(6, root)


def check_law7(root: Path) -> list[Violation]:
    """State, I/O and step calls inside ``@agent`` functions of products.

    Inside an agent's body (nested functions included): ``global`` / ``nonlocal``; calls of
    the product's ``@tool`` or ``@agent`` functions; ``open(...)``, ``io.open`` / ``os.open``,
    ``Path(...).open`` and ``.write_text`` / ``.write_bytes`` / ``.touch`` / ``.mkdir`` /
    ``.unlink`` ...; imports or uses of persistence modules and pickle; and mutation of a
    module-level name: assigning or deleting its attribute or item, calling a mutating
    method on it (``.append``, ``.update``, ``.add``, ...; see ``MUTATORS``), or
    ``setattr`` / ``delattr`` on it. Names the agent binds itself are its own.
    """
    return check(7, root)


def check_law8(root: Path) -> list[Violation]:
    """Agent outputs that are not AgentOutput models, and output models with control fields.

    Every ``@agent`` function must be annotated to return a product class deriving from
    ``AgentOutput`` (directly or through product classes). No AgentOutput model, nor any
    product model reachable from its field annotations, may declare or alias (``Field(alias=
    ...)``) a field named like a control field (``CONTROL_FIELDS``, compared ignoring case,
    ``_``, ``-`` and blanks: ``next_step``, ``nextStep``, ``go_to`` ...).
    """
    return check(8, root)


def check_law9(root: Path) -> list[Violation]:
    """Imports of engine internals by ``master_sdk/notebook/``, ``master_sdk/server/`` and
    ``master_sdk/cli.py``.

    Allowed: ``master_sdk`` itself and the public names it exports, ``master_sdk.errors``,
    (notebook only) ``master_sdk.notebook.*``, (server and CLI) ``master_sdk.server.*`` and
    (CLI only) ``master_sdk.notebook_tests``, the user-facing package behind ``master test``.
    Any other master_sdk module is flagged, whether
    imported (relatively, lazily or for type checking only) or reached as ``ms.<module>``.
    """
    return check(9, root)


CHECKS: Mapping[int, Callable[[Path], list[Violation]]] = {
    0: check_parse,
    1: check_law1,
    2: check_law2,
    3: check_law3,
    4: check_law4,
    5: check_law5,
    6: check_law6,
    7: check_law7,
    8: check_law8,
    9: check_law9,
}


def main(argv: list[str]) -> int:
    """Print every violation under the given root (default: this repository); 1 if any."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2]
    violations = check_all(root)
    for violation in violations:
        print(violation)
    print(f"{len(violations)} violation(s) in {len(scanned_files(root))} files under {root}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

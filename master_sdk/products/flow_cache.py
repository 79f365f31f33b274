"""Compiled flows kept as plain data, so resuming a run needs no product import or pydantic.

A fresh process that continues a paused run (``master approve RUN``) needs the run's flow
as its files are now: compiling it means building the full settings, validating the flow
file and the product's manifest and config with pydantic, and importing the product's
components. That is most of what the process does, and its answer only changes when a file
changes. So when a flow has been compiled, what the engine reads of it (each step's type,
name, model, reject target, schema and output fields, the flow's effective policy, the
step specs as data, the flow hash) is kept beside this module's bytecode, one small
:class:`~master_sdk.config.file_cache.JsonCache` file per entry (a resume reads three, however
many flows are kept; the oldest files go beyond :data:`MAX_FILES`), under a hash of
everything it was compiled from:

- the settings' identity (:attr:`~master_sdk.config.opening.SettingsSource.key`: the
  config files' texts, the ``MASTER_*`` variables, the arguments; projects with secrets
  have none and are never cached),
- every file of the product's code (Python files, manifest, ``config/``, by content),
  the flow file's text and the names of the flow files beside it,
- this library's version and the stats of its modules that compile flows, Python's
  version, and the folders on ``sys.path`` but the current one (installing or removing a
  package changes them).

Any change gives a new key, so the flow is compiled from its files again, with the same
checks and the same errors naming file, flow, step and field. A flow read back here has no
tools or agents loaded (:attr:`CompiledFlow.full` compiles the real one): the engine loads
them before a tool or agent step runs, is skipped or recovered, so a resume that stops at
the next human step never imports the product. Templates are compiled again from the
stored source (no code is stored), and every value read is checked; an entry of the wrong
shape is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from master_sdk.config.file_cache import JsonCache, beside_bytecode
from master_sdk.products.compiler import HITL_OUTPUT_FIELDS, CompiledFlow, CompiledStep

if TYPE_CHECKING:
    from master_sdk.config.settings import Settings
    from master_sdk.memory.records import RunRow
    from master_sdk.orchestrator.templating import TemplateEngine
    from master_sdk.workbench import Workbench

CACHE_FOLDER = "master_sdk-flows"
MAX_FILES = 256
"""The most entry files kept; writing one more removes the oldest quarter."""
_FORMAT = 1
_STEP_TYPES = frozenset({"tool", "agent", "hitl", "user_input"})
# the library modules whose code decides what a compiled flow holds
_LIBRARY_FILES = (
    "products/compiler.py",
    "products/loader.py",
    "products/flow_cache.py",
    "products/registry.py",
    "products/fingerprint.py",
    "contracts/flow.py",
    "contracts/policy.py",
    "governance/policy.py",
    "governance/budgets.py",
    "governance/names.py",
    "orchestrator/templating.py",
    "authoring.py",
    "config/settings.py",
    "config/loader.py",
)


class Record:
    """A read-only view of a pydantic model's data: its fields as attributes."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_fields", dict(fields))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_fields":  # copy and pickle probe these
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a cached {name!r} cannot be changed")

    def __reduce__(self) -> tuple[type[Record], tuple[dict[str, Any]]]:
        return (Record, (self._fields,))

    def __repr__(self) -> str:
        return f"Record({self._fields!r})"


def to_plain(value: Any) -> Any:
    """A pydantic model (its fields, recursively) as tagged JSON data: ``["r", {...}]`` a
    model, ``["d", {...}]`` a mapping, ``["l", [...]]`` a list or tuple; scalars as they
    are. Raises TypeError for anything else."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return ["r", {name: to_plain(getattr(value, name)) for name in type(value).model_fields}]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a mapping with keys that are not strings")
        return ["d", {k: to_plain(v) for k, v in value.items()}]
    if isinstance(value, list | tuple):
        return ["l", [to_plain(v) for v in value]]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{type(value).__name__} is not plain data")


def from_plain(data: Any) -> Any:
    """The value :func:`to_plain` stored (models as :class:`Record`); raises ValueError
    for data of another shape."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if not isinstance(data, list) or len(data) != 2:
        raise ValueError("not tagged data")
    tag, body = data
    if tag == "l" and isinstance(body, list):
        return [from_plain(v) for v in body]
    if tag in ("r", "d") and isinstance(body, dict):
        items = {str(k): from_plain(v) for k, v in body.items()}
        return Record(items) if tag == "r" else items
    raise ValueError("not tagged data")


def _library_stamp() -> list[Any]:
    from master_sdk import __version__

    base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stamp: list[Any] = [_FORMAT, __version__, list(sys.version_info[:3])]
    # the current folder changes whenever a file is made in it: not a sign of an install
    here = os.getcwd()
    folders = [p for p in sys.path if p and os.path.abspath(p) != here]
    for name in (*(os.path.join(base, f) for f in _LIBRARY_FILES), *folders):
        try:
            info = os.stat(name or ".")
        except OSError:
            stamp.append([name, None])
            continue
        stamp.append([name, info.st_mtime_ns, info.st_size, info.st_ino])
    return stamp


def _hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _flow_names(flows_dir: str) -> list[str]:
    try:
        names = os.listdir(flows_dir)
    except OSError:
        return []
    return sorted(n for n in names if n.endswith((".yaml", ".yml")))


class FlowCache:
    """The compiled flows of one project's settings (see the module docstring)."""

    def __init__(self, settings_key: str, *, path: Path | None = None) -> None:
        from master_sdk.products.fingerprint import Fingerprinter

        self._folder = path or beside_bytecode(__file__, CACHE_FOLDER)
        self._files: dict[str, JsonCache] = {}
        self._base = _hash(_library_stamp(), settings_key)
        self._prints = Fingerprinter()
        self._known: dict[str, tuple[str, CompiledFlow]] = {}
        self._remembered: dict[str, CompiledFlow] = {}
        self._platform_of: object = None  # the settings remember_platform last kept
        self._templates: TemplateEngine | None = None

    # ------------------------------------------------------------------ entries

    def _file(self, key: str) -> JsonCache:
        cache = self._files.get(key)
        if cache is None:
            name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            cache = self._files[key] = JsonCache(self._folder / f"{name}.json", max_entries=1)
        return cache

    def _get(self, key: str) -> Any:
        return self._file(key).get(key)

    def _put(self, key: str, value: Any) -> None:
        cache = self._file(key)
        if cache.get(key) == value:
            return
        cache.put(key, value)
        try:
            with os.scandir(self._folder) as scan:
                files = [(e.stat().st_mtime_ns, e.path) for e in scan if e.name.endswith(".json")]
        except OSError:
            return
        if len(files) > MAX_FILES:
            for _, old in sorted(files)[: len(files) - MAX_FILES * 3 // 4]:
                with suppress(OSError):
                    os.unlink(old)

    # ------------------------------------------------------------------ platform

    def platform(self) -> dict[str, Any] | None:
        """The few platform settings a resume reads (``products_path``, the policy's
        ``max_input_bytes``, ``max_rendered_chars``, ``max_render_ms``), or None."""
        entry = self._get(f"platform:{self._base}")
        if not isinstance(entry, dict) or not isinstance(entry.get("products_path"), str):
            return None
        for name in ("max_input_bytes", "max_rendered_chars", "max_render_ms"):
            if type(entry.get(name)) is not int or entry[name] < 1:
                return None
        return entry

    def remembers(self, flow: CompiledFlow, settings: Settings) -> bool:
        """Whether :meth:`remember` kept this very ``flow`` and :meth:`remember_platform`
        these very ``settings`` in this process (then neither has anything to do)."""
        return self._remembered.get(flow.ref) is flow and self._platform_of is settings

    def remember_platform(self, settings: Settings) -> None:
        """Keep what :meth:`platform` returns, from full settings."""
        self._platform_of = settings
        policy = settings.policy
        self._put(
            f"platform:{self._base}",
            {
                "products_path": str(settings.products_path),
                "max_input_bytes": policy.max_input_bytes,
                "max_rendered_chars": policy.max_rendered_chars,
                "max_render_ms": policy.max_render_ms,
            },
        )

    # ------------------------------------------------------------------ flows

    def _key(self, folder: str, flows_dir: str, file: str) -> tuple[str, str] | None:
        """The key of a flow's entry as its files are now, and the flow file's text."""
        from master_sdk.config import safe_yaml

        try:
            source = safe_yaml.read_text(Path(file))
        except (OSError, safe_yaml.YamlProblem):
            return None  # compiling reports it
        code = self._prints.of(Path(folder), None).code
        names = _flow_names(flows_dir)
        return _hash(self._base, folder, code, flows_dir, names, file, source), source

    def flow(self, ref: str, full: Callable[[], CompiledFlow]) -> CompiledFlow | None:
        """The compiled flow ``product/flow`` from the cache, if its files are as they
        were when it was compiled; else None. ``full`` compiles it from its files (with
        its tools and agents) when a step needs them. The same object is returned while
        the files stay unchanged."""
        where = self._get(f"where:{self._base}:{ref}")
        if not isinstance(where, dict):
            return None
        folder, flows_dir, file = where.get("folder"), where.get("flows_dir"), where.get("file")
        if not (isinstance(folder, str) and isinstance(flows_dir, str) and isinstance(file, str)):
            return None
        found = self._key(folder, flows_dir, file)
        if found is None:
            return None
        key, source = found
        known = self._known.get(ref)
        if known is not None and known[0] == key:
            return known[1]
        entry = self._get(f"flow:{key}")
        if entry is None:
            return None
        try:
            compiled = self._rebuild(entry, source, full)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # not what this version writes: compiled from the files instead
        if compiled is None or compiled.ref != ref:
            return None
        self._known[ref] = (key, compiled)
        return compiled

    def remember(self, flow: CompiledFlow, *, folder: Path, flows_dir: Path) -> None:
        """Keep ``flow`` (just compiled from its files) for the next process."""
        if self._remembered.get(flow.ref) is flow:
            return
        self._remembered[flow.ref] = flow
        found = self._key(str(folder), str(flows_dir), flow.file)
        if found is None or found[1] != flow.source:
            return  # the file changed since it was compiled
        key, _ = found
        try:
            entry = {
                "product": flow.product,
                "id": flow.id,
                "file": flow.file,
                "flow_hash": flow.flow_hash,
                "product_version": flow.product_version,
                "spec": to_plain(flow.spec),
                "policy": to_plain(flow.policy),
                "model_aliases": dict(flow.model_aliases),
                "steps": [
                    {
                        "name": step.name,
                        "model": step.model,
                        "reject_to": step.reject_to,
                        "output_fields": None
                        if step.output_fields is None
                        else sorted(step.output_fields),
                    }
                    for step in flow.steps
                ],
            }
            json.dumps(entry)
        except (TypeError, ValueError):
            return  # not plain data: never cached
        location = {"folder": str(folder), "flows_dir": str(flows_dir), "file": flow.file}
        self._put(f"flow:{key}", entry)
        self._put(f"where:{self._base}:{flow.ref}", location)

    def _rebuild(
        self, entry: Any, source: str, full: Callable[[], CompiledFlow]
    ) -> CompiledFlow | None:
        """A :class:`CompiledFlow` from an entry: every field checked, templates compiled
        again from the step specs (under the flow's render limits)."""
        from master_sdk.governance.budgets import AllowLists
        from master_sdk.orchestrator.templating import RenderLimits, TemplateEngine

        if not isinstance(entry, dict):
            return None
        spec, policy = from_plain(entry["spec"]), from_plain(entry["policy"])
        if not isinstance(spec, Record) or not isinstance(policy, Record):
            return None
        platform = self.platform()
        if platform is None:
            return None
        if self._templates is None:
            self._templates = TemplateEngine(
                max_rendered_chars=platform["max_rendered_chars"],
                max_render_ms=platform["max_render_ms"],
            )
        templates = self._templates
        limits = RenderLimits(int(policy.max_rendered_chars), int(policy.max_render_ms))
        stored = entry["steps"]
        if not isinstance(stored, list) or len(stored) != len(spec.steps):
            return None
        steps: list[CompiledStep] = []
        index: dict[str, int] = {}
        for position, (data, step_spec) in enumerate(zip(stored, spec.steps, strict=True)):
            kind = step_spec.type
            if kind not in _STEP_TYPES or not isinstance(step_spec.id, str):
                return None
            fields = data["output_fields"]
            step = CompiledStep(
                index=position,
                id=step_spec.id,
                type=kind,
                spec=step_spec,
                name=_text(data["name"]),
                model=_text_or_none(data["model"]),
                reject_to=_int_or_none(data["reject_to"]),
                output_fields=None if fields is None else frozenset(_texts(fields)),
            )
            if step_spec.when is not None:
                step.when = templates.compile_guard(step_spec.when, limits=limits)
            if kind in ("tool", "agent"):
                step.input = templates.compile(step_spec.input, limits=limits)
            elif kind == "hitl":
                if step_spec.show is not None:
                    step.show = templates.compile(step_spec.show, limits=limits)
                if step.output_fields != HITL_OUTPUT_FIELDS:
                    return None
            else:
                if not isinstance(step_spec.schema_, dict):
                    return None
                step.schema = step_spec.schema_
            index[step.id] = position
            steps.append(step)
        output = None
        if spec.output is not None:
            output = templates.compile(spec.output, limits=limits)
        aliases = entry["model_aliases"]
        if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
        ):
            return None
        return CompiledFlow(
            product=_text(entry["product"]),
            id=_text(entry["id"]),
            file=_text(entry["file"]),
            spec=spec,  # type: ignore[arg-type]  # the model's fields, read-only
            steps=steps,
            index=index,
            output=output,
            policy=policy,  # type: ignore[arg-type]  # the model's fields, read-only
            flow_hash=_text(entry["flow_hash"]),
            product_version=_text(entry["product_version"]),
            source=source,
            model_aliases=aliases,
            allow=AllowLists.of(policy),  # type: ignore[arg-type]  # reads two fields
            full=full,
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _int_or_none(value: Any) -> int | None:
    if value is not None and type(value) is not int:
        raise ValueError("expected an integer")
    return value


def _texts(values: Any) -> list[str]:
    if not isinstance(values, list):
        raise ValueError("expected a list")
    return [_text(v) for v in values]


# ---------------------------------------------------------------------- the workbench's use


def _cache_of(wb: Workbench) -> FlowCache | None:
    """The workbench's flow cache, or None when its settings have no key (secrets)."""
    cache = wb._flow_cache
    if cache is None:
        key = wb._settings_source.key
        if key is None:
            return None
        cache = wb._flow_cache = FlowCache(key)
    return cache


def flow_of(wb: Workbench, row: RunRow) -> CompiledFlow:
    """The flow of a stored run as its files are now: from the flow cache when it holds
    the flow the run is pinned to (no product import, no full settings), else compiled
    from its files (and then kept for the next process).

    Raises:
        FlowError, NotFound: as :meth:`ProductCatalog.flow`.
    """
    ref = f"{row.product}/{row.flow}"
    cache = _cache_of(wb)
    # a workbench that has built its catalog (a notebook's kernel) keeps using it: one
    # compiled flow per file version in a process, as handles expect
    if cache is not None and wb._catalog is None:
        found = cache.flow(ref, lambda: wb.catalog.flow(ref))
        if (
            found is not None
            and found.flow_hash == row.flow_hash
            and found.product_version == row.product_version
        ):
            return found
    flow = wb.catalog.flow(ref)
    # remembered already: the usual case of a notebook resuming its runs, which need not
    # check the product's files a second time
    if cache is not None and not cache.remembers(flow, wb.settings):
        product = wb.catalog.product(row.product)
        if product.flows_dir is not None:
            cache.remember_platform(wb.settings)
            cache.remember(flow, folder=product.path.resolve(), flows_dir=product.flows_dir)
    return flow


def is_current(wb: Workbench, row: RunRow, flow: CompiledFlow) -> bool:
    """Whether ``flow`` (which a run handle holds) is still the flow of ``row`` as its
    files are now: the catalog's compiled flow, or the flow cache's."""
    ref = f"{row.product}/{row.flow}"
    if flow.full is None:
        return wb.catalog.flow(ref) is flow
    cache = _cache_of(wb)
    return cache is not None and cache.flow(ref, flow.full) is flow


def max_input_bytes(wb: Workbench) -> int:
    """The platform policy's ``max_input_bytes``, from the flow cache when it holds it."""
    cache = _cache_of(wb)
    platform = cache.platform() if cache is not None else None
    if platform is not None:
        return int(platform["max_input_bytes"])
    return wb.settings.policy.max_input_bytes

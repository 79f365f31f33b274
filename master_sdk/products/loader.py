"""Discovers products, validates manifests, imports components, loads flows.

A product is a folder ``products/<name>/`` with a ``manifest.yaml``. Its components
module(s) are imported as a private package confined to the product folder, so sibling
modules work (``from . import helpers``) and nothing outside the folder is importable by
path (see :mod:`~master_sdk.products.imports`, which also bounds the import time). One
broken product never stops the others: its error is kept and raised when the product is
used, and listed by :meth:`ProductCatalog.validate`.

**Reloading.** An open workbench sees every edit to a product on its next use: a flow
file is compiled again when it changes; a change to any Python file of the product, its
manifest or ``config/`` (or a flow file added or removed) loads the whole product again,
as a unit, into a new private package. Nothing is patched in place, so objects made from
the old code keep working and never mix with the new. A run records the hash of its flow
*and* of its product's code (see :func:`~master_sdk.products.compiler.flow_hash`); a paused
run resumed after either changed raises :class:`~master_sdk.errors.FlowChanged` unless
the change is allowed.
"""

from __future__ import annotations

import itertools
import re
import threading
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import AgentSpec, ToolSpec
from master_sdk.config import safe_yaml
from master_sdk.contracts.flow import FlowSpec, Manifest, ProductConfig
from master_sdk.contracts.policy import Policy
from master_sdk.errors import FlowError, NotFound
from master_sdk.orchestrator.templating import TemplateEngine
from master_sdk.products.compiler import CompiledFlow, FlowCompiler
from master_sdk.products.fingerprint import Fingerprint, Fingerprinter
from master_sdk.products.imports import (
    PACKAGE_ROOT,
    ImportRefused,
    LoadTimeout,
    bounded,
    drop_package,
    import_module,
    new_package,
)
from master_sdk.products.registry import Registry
from master_sdk.products.schema_cache import SchemaCache
from master_sdk.products.spec_errors import spec_error

DEFAULT_LOAD_TIMEOUT_S = 10.0
"""How long importing one components module may take before it is stopped."""

_VERSIONS = itertools.count(1)  # package suffixes: unique in the process, across workbenches


@dataclass
class Product:
    """A loaded product: its manifest, policy, tools, agents and flow files."""

    name: str
    path: Path
    manifest: Manifest
    config: ProductConfig
    policy: Policy
    tools: dict[str, ToolSpec]
    agents: dict[str, AgentSpec]
    flow_files: dict[str, Path]
    compiler: FlowCompiler
    package: str = ""
    flows_dir: Path | None = None
    code_hash: str = ""
    flows: dict[str, CompiledFlow] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The manifest's version."""
        return self.manifest.version


def confined(base: Path, relative: str, *, file: str, field: str) -> Path:
    """Resolve ``relative`` inside ``base``; refuse absolute paths, ``..`` and escaping links.

    Every component is resolved (symbolic links included) before the check, so a link that
    points outside the product folder is refused wherever it sits in the path.
    """
    candidate = Path(relative)
    outside = candidate.is_absolute() or ".." in candidate.parts
    if outside or "\x00" in relative or "\\" in relative:
        raise FlowError(
            f"path {relative!r} must be relative to the product folder, without '..'",
            file=file,
            field=field,
        )
    try:
        resolved = (base / candidate).resolve()
        root = base.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # link loops, bad names
        raise FlowError(
            f"path {relative!r} cannot be resolved: {exc}", file=file, field=field
        ) from None
    if resolved != root and root not in resolved.parents:
        raise FlowError(
            f"path '{relative}' leaves the product folder (through a symbolic link?)",
            file=file,
            field=field,
        )
    return resolved


def _stamp(path: Path) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file, or zeros if it vanished (compiling then says so)."""
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


def _read_spec(path: Path, model: type[BaseModel], *, flow: str | None = None) -> tuple[Any, str]:
    try:
        source = safe_yaml.read_text(path)
        raw = safe_yaml.loads(source, cached=True)
    except OSError as exc:
        raise FlowError(f"cannot read: {exc.strerror}", file=str(path), flow=flow) from None
    except safe_yaml.YamlProblem as exc:
        raise FlowError(str(exc), file=str(path), flow=flow) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise FlowError("expected a mapping at the top level", file=str(path), flow=flow)
    return raw, source


class ProductCatalog:
    """Every product under a folder, loaded lazily and again whenever its files change.

    Each use of a product (:meth:`product`, :meth:`flow`) compares the product's
    fingerprint (its Python files, manifest, ``config/`` and flow file names; see
    :mod:`~master_sdk.products.fingerprint`) with the one it was loaded from; if they
    differ, the whole product is loaded again as a unit, into a new private package, and
    its flows are compiled again. Flow files are checked one by one, on each use. A broken
    product is remembered with its error until its files change. Loading is serialised by a
    lock, so threads sharing a workbench never see a half-loaded product.
    """

    def __init__(
        self,
        products_dir: Path,
        *,
        policy: Policy,
        templates: TemplateEngine,
        model_names: set[str],
        load_timeout_s: float | None = DEFAULT_LOAD_TIMEOUT_S,
    ) -> None:
        self.products_dir = products_dir
        self.platform_policy = policy
        self.templates = templates
        self.model_names = model_names
        self.load_timeout_s = load_timeout_s
        self._entries: dict[str, _Entry] = {}
        self._stamps: dict[str, tuple[int, int]] = {}
        self._prints = Fingerprinter()
        self._schemas: dict[str, SchemaCache] = {}
        self._lock = threading.RLock()

    def names(self) -> list[str]:
        """Product folder names that hold a manifest, sorted."""
        if not self.products_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.products_dir.iterdir() if (p / "manifest.yaml").is_file()
        )

    def product(self, name: str) -> Product:
        """The product as its files are now (loaded again if they changed since).

        Raises:
            NotFound: there is no such product.
            FlowError: the product is broken (manifest, config, components).
        """
        entry = self._entries.get(name)
        if entry is not None:  # the usual case, without the lock: a check of file stats
            now = self._prints.of(entry.folder, entry.flows_dir)
            if entry.fingerprint == now:
                if entry.product is None:
                    raise entry.error or FlowError(f"product '{name}' could not be loaded")
                return entry.product
        with self._lock:
            entry = self._entries.get(name)
            manifest = self.products_dir / name / "manifest.yaml"
            if (entry is None and name not in self.names()) or not manifest.is_file():
                self._forget(name)
                raise NotFound(
                    f"no product '{name}' in {self.products_dir} "
                    f"(products: {', '.join(self.names()) or '(none)'})"
                )
            folder = entry.folder if entry is not None else (self.products_dir / name).resolve()
            now = self._prints.of(folder, entry.flows_dir if entry else None)
            if entry is None or entry.fingerprint != now:
                entry = self._reload(name, now)
            if entry.product is None:
                raise entry.error or FlowError(f"product '{name}' could not be loaded")
            return entry.product

    def fingerprint(self, name: str) -> str:
        """The code hash of a product as loaded now (changes when its Python, manifest or
        config change)."""
        return self.product(name).code_hash

    def flow(self, ref: str) -> CompiledFlow:
        """The compiled flow ``product/flow``, as its files are now."""
        product_name, sep, flow_id = ref.partition("/")
        if not sep or not product_name or not flow_id:
            raise NotFound(f"'{ref}' is not a flow reference; write 'product/flow'")
        product = self.product(product_name)
        path = product.flow_files.get(flow_id)
        if path is None:
            raise NotFound(
                f"product '{product_name}' has no flow '{flow_id}' "
                f"(flows: {', '.join(sorted(product.flow_files)) or '(none)'})"
            )
        # a flow edited while the workbench is open is compiled again, so a paused run
        # resumed from this process is checked against the file as it is now
        stamp = _stamp(path)
        known = product.flows.get(flow_id)
        if known is not None and self._stamps.get(ref) == stamp:
            return known
        with self._lock:
            known = product.flows.get(flow_id)
            if known is not None and self._stamps.get(ref) == stamp:
                return known  # another thread compiled it meanwhile
            compiled = self._compile(product, flow_id, path)
            product.flows[flow_id] = compiled
            self._stamps[ref] = stamp
            return compiled

    def validate(self) -> list[FlowError]:
        """Load every product and compile every flow; return every problem found."""
        problems: list[FlowError] = []
        for name in self.names():
            try:
                product = self.product(name)
            except FlowError as exc:
                problems.append(exc)
                continue
            except NotFound:
                continue  # removed while validating
            for flow_id in sorted(product.flow_files):
                try:
                    self.flow(f"{name}/{flow_id}")
                except FlowError as exc:
                    problems.append(exc)
        return problems

    def refuse(self, name: str, reason: str) -> None:
        """Record ``name`` as broken for ``reason`` without loading it (a child process
        found it stops or stalls the process importing it); it is tried again once its
        files change."""
        with self._lock:
            folder = (self.products_dir / name).resolve()
            self._forget(name)
            error = FlowError(reason, file=str(folder / "manifest.yaml"), field="components")
            self._entries[name] = _Entry(
                fingerprint=self._prints.of(folder, None),
                folder=folder,
                flows_dir=None,
                product=None,
                error=error,
            )

    def isolate(self, root: Path, names: list[str] | None = None) -> None:
        """Import every product (or ``names``) in a child process first; refuse those that
        stop or stall it (see :mod:`~master_sdk.products.isolation`)."""
        from master_sdk.products.isolation import precheck

        known = self.names()
        names = known if names is None else [n for n in names if n in known]
        failed = precheck(root, names, timeout_s=self.load_timeout_s or 0.0)
        for name, reason in failed.items():
            self.refuse(name, f"product '{name}': {reason}")

    def close(self) -> None:
        """Forget every loaded product and drop its private package from ``sys.modules``."""
        with self._lock:
            for name in list(self._entries):
                self._forget(name)

    # ------------------------------------------------------------------ loading

    def _forget(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None and entry.product is not None:
            drop_package(entry.product.package)

    def _reload(self, name: str, before: Fingerprint) -> _Entry:
        self._forget(name)
        folder = (self.products_dir / name).resolve()
        try:
            product = self._load(name)
        except FlowError as exc:
            entry = _Entry(
                fingerprint=before, folder=folder, flows_dir=None, product=None, error=exc
            )
        else:
            after = self._prints.of(folder, product.flows_dir)
            # an edit made while loading makes the next use load again
            entry = _Entry(
                fingerprint=Fingerprint(before.code, after.flows),
                folder=folder,
                flows_dir=product.flows_dir,
                product=product,
                error=None,
            )
            product.code_hash = before.code
            product.compiler.code_hash = before.code
        for ref in [r for r in self._stamps if r.startswith(name + "/")]:
            del self._stamps[ref]
        self._entries[name] = entry
        return entry

    def _load(self, name: str) -> Product:
        folder = self.products_dir / name
        manifest_file = folder / "manifest.yaml"
        confined(folder, "manifest.yaml", file=str(manifest_file), field="manifest")
        raw, _ = _read_spec(manifest_file, Manifest)
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            raise spec_error(exc, raw, file=str(manifest_file), flow=None, model=Manifest) from None
        if manifest.name != name:
            raise FlowError(
                f"manifest name '{manifest.name}' differs from the folder name '{name}'",
                file=str(manifest_file),
                field="name",
            )
        config_file = folder / "config" / "product.yaml"
        config = ProductConfig()
        if config_file.is_file():
            confined(folder, "config/product.yaml", file=str(config_file), field="config")
            raw_config, _ = _read_spec(config_file, ProductConfig)
            try:
                config = ProductConfig.model_validate(raw_config)
            except ValidationError as exc:
                raise spec_error(
                    exc, raw_config, file=str(config_file), flow=None, model=ProductConfig
                ) from None
        from master_sdk.governance.policy import tighten

        policy = tighten(self.platform_policy, config.policy, file=str(config_file))
        for alias, target in config.models.items():
            if target not in self.model_names:
                raise FlowError(
                    f"model alias '{alias}' points to '{target}', which configs/models.yaml "
                    "does not define",
                    file=str(config_file),
                    field=f"models.{alias}",
                    hint=f"models: {', '.join(sorted(self.model_names))}",
                )
        for collection, declared in config.collections.items():
            target = config.models.get(declared.model, declared.model)
            if target not in self.model_names:
                raise FlowError(
                    f"collection '{collection}' embeds with '{target}', which configs/models.yaml "
                    "does not define",
                    file=str(config_file),
                    field=f"collections.{collection}.model",
                    hint=f"models: {', '.join(sorted(self.model_names))}",
                )
        flows_dir = confined(folder, manifest.flows, file=str(manifest_file), field="flows")
        flow_files: dict[str, Path] = {}
        if flows_dir.is_dir():
            for path in sorted([*flows_dir.glob("*.yaml"), *flows_dir.glob("*.yml")]):
                confined(
                    folder, str(path.relative_to(folder.resolve())), file=str(path), field="flows"
                )
                flow_files[path.stem] = path
        package = f"{PACKAGE_ROOT}.{_identifier(name)}_v{next(_VERSIONS)}"
        registry = self._components(package, folder, manifest, manifest_file)
        compiler = FlowCompiler(
            product=name,
            product_version=manifest.version,
            tools=registry.tools,
            agents=registry.agents,
            policy=policy,
            templates=self.templates,
            model_aliases=config.models,
            model_names=self.model_names,
        )
        return Product(
            name=name,
            path=folder,
            manifest=manifest,
            config=config,
            policy=policy,
            tools=registry.tools,
            agents=registry.agents,
            flow_files=flow_files,
            compiler=compiler,
            package=package,
            flows_dir=flows_dir,
        )

    def _components(
        self, package: str, folder: Path, manifest: Manifest, manifest_file: Path
    ) -> Registry:
        entries = (
            [manifest.components] if isinstance(manifest.components, str) else manifest.components
        )
        given = "components" in manifest.model_fields_set
        root = folder.resolve()
        registry = Registry()
        new_package(package, root)
        try:
            for entry in entries:
                path = confined(folder, entry, file=str(manifest_file), field="components")
                if not given and not path.exists():
                    continue  # no components.py: a product of human steps only
                if path.suffix != ".py" or not path.is_file():
                    problem = "does not exist" if not path.exists() else "is not a .py file"
                    raise FlowError(
                        f"components module '{entry}' {problem} in the product folder",
                        file=str(manifest_file),
                        field="components",
                        hint="remove 'components:' from the manifest if the product has no "
                        "tools or agents",
                    )
                relative = path.relative_to(root).with_suffix("")
                module_name = ".".join([package, *relative.parts])
                module = self._import(module_name, path, root)
                registry.collect(module, path)
        except BaseException:
            drop_package(package)
            raise
        return registry

    def _import(self, module_name: str, path: Path, root: Path) -> types.ModuleType:
        """Import one components module, turning every way it can fail into a FlowError."""
        limit = self.load_timeout_s
        try:
            return bounded(lambda: import_module(module_name), limit)
        except FlowError:
            raise
        except LoadTimeout:
            raise FlowError(
                f"importing components took longer than {limit:g} s and was stopped "
                "(a loop or a wait at import time?); load_timeout_s in configs/app.yaml "
                "sets the limit",
                file=str(path),
                field="components",
            ) from None
        except SystemExit as exc:
            raise FlowError(
                f"components called sys.exit({exc.code!r}) while being imported",
                file=str(path),
                field="components",
                hint="a product module must not exit the process",
            ) from None
        except ImportRefused as exc:
            raise FlowError(str(exc), file=str(path), field="components") from None
        except Exception as exc:
            raise FlowError(
                f"importing components failed: {type(exc).__name__}: {exc}{_where(exc, root)}",
                file=str(path),
                field="components",
            ) from None

    def _compile(self, product: Product, flow_id: str, path: Path) -> CompiledFlow:
        raw, source = _read_spec(path, FlowSpec, flow=flow_id)
        try:
            spec = FlowSpec.model_validate(raw)
        except ValidationError as exc:
            raise spec_error(exc, raw, file=str(path), flow=str(raw.get("id", flow_id))) from None
        if spec.id != flow_id:
            raise FlowError(
                f"flow id '{spec.id}' differs from the file name '{path.name}'",
                file=str(path),
                flow=spec.id,
                field="id",
                hint=f"rename the file to {spec.id}.yaml or set id: {flow_id}",
            )
        compiled = product.compiler.compile(spec, file=str(path), source=source)
        # a schema the validator cannot use must stop the run before it starts, not at
        # the form; validate() and run() see the same check
        _check_schemas(compiled, self._schema_cache(product.path))
        return compiled

    def _schema_cache(self, folder: Path) -> SchemaCache:
        # one cache for every product: its keys hold the schema itself, not where it lives
        cache = self._schemas.get("")
        if cache is None:
            cache = self._schemas[""] = SchemaCache()
        return cache


@dataclass
class _Entry:
    fingerprint: Fingerprint
    folder: Path
    flows_dir: Path | None
    product: Product | None
    error: FlowError | None


def _where(exc: BaseException, root: Path) -> str:
    """`` (line N of file)`` for the deepest frame of a traceback inside the product."""
    import traceback

    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        place = Path(frame.filename)
        if place == root or root in place.parents:
            return f" (line {frame.lineno} of {place.name})"
    return ""


def _check_schemas(flow: CompiledFlow, cache: SchemaCache) -> None:
    """Check every JSON Schema of a flow against its metaschema (a slow import: schemas
    found valid before are remembered, see :mod:`~master_sdk.products.schema_cache`)."""
    problem = _schema_problem(flow.spec.inputs, cache)
    if problem:
        raise FlowError(problem, file=flow.file, flow=flow.id, field="inputs")
    for step in flow.steps:
        if step.schema is not None:
            problem = _schema_problem(step.schema, cache)
            if problem:
                raise FlowError(problem, file=flow.file, flow=flow.id, step=step.id, field="schema")


def _schema_problem(schema: Mapping[str, Any], cache: SchemaCache) -> str | None:
    key = cache.key(schema)
    if key is not None and cache.known(key):
        return None
    from master_sdk.orchestrator.validation import schema_problem

    problem = schema_problem(schema)
    if problem is None and key is not None:
        cache.remember(key)
    return problem


def _identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)

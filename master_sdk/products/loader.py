"""Discovers products, validates manifests, imports components, loads flows.

A product is a folder ``products/<name>/`` with a ``manifest.yaml``. Its components
module(s) are imported as a private package confined to the product folder, so sibling
modules work (``from . import helpers``) and nothing outside the folder is importable by
path. One broken product never stops the others: its error is kept and raised when the
product is used, and listed by :meth:`ProductCatalog.validate`.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from master_sdk.authoring import AGENT_ATTR, TOOL_ATTR, AgentSpec, ToolSpec
from master_sdk.config import safe_yaml
from master_sdk.contracts.flow import FlowSpec, Manifest, ProductConfig
from master_sdk.contracts.policy import Policy
from master_sdk.errors import FlowError, NotFound
from master_sdk.governance.names import name_problem
from master_sdk.orchestrator.templating import TemplateEngine
from master_sdk.products.compiler import CompiledFlow, FlowCompiler, spec_error

PACKAGE_ROOT = "master_products"


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
        raw = safe_yaml.loads(source)
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
    """Every product under a folder, loaded lazily and one at a time."""

    def __init__(
        self,
        products_dir: Path,
        *,
        policy: Policy,
        templates: TemplateEngine,
        model_names: set[str],
    ) -> None:
        self.products_dir = products_dir
        self.platform_policy = policy
        self.templates = templates
        self.model_names = model_names
        self._products: dict[str, Product] = {}
        self._errors: dict[str, FlowError] = {}
        self._stamps: dict[str, tuple[int, int]] = {}

    def names(self) -> list[str]:
        """Product folder names that hold a manifest, sorted."""
        if not self.products_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.products_dir.iterdir() if (p / "manifest.yaml").is_file()
        )

    def product(self, name: str) -> Product:
        """Load (once) and return a product; raises FlowError if it is broken."""
        if name in self._products:
            return self._products[name]
        if name in self._errors:
            raise self._errors[name]
        if name not in self.names():
            raise NotFound(
                f"no product '{name}' in {self.products_dir} "
                f"(products: {', '.join(self.names()) or '(none)'})"
            )
        try:
            product = self._load(name)
        except FlowError as exc:
            self._errors[name] = exc
            raise
        self._products[name] = product
        return product

    def flow(self, ref: str) -> CompiledFlow:
        """The compiled flow ``product/flow``."""
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
        if flow_id in product.flows and self._stamps.get(ref) == stamp:
            return product.flows[flow_id]
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
            for flow_id in sorted(product.flow_files):
                try:
                    compiled = self.flow(f"{name}/{flow_id}")
                    _check_schemas(compiled)
                except FlowError as exc:
                    problems.append(exc)
        return problems

    def _load(self, name: str) -> Product:
        folder = self.products_dir / name
        manifest_file = folder / "manifest.yaml"
        confined(folder, "manifest.yaml", file=str(manifest_file), field="manifest")
        raw, _ = _read_spec(manifest_file, Manifest)
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            raise spec_error(exc, raw, file=str(manifest_file), flow=None) from None
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
                raise spec_error(exc, raw_config, file=str(config_file), flow=None) from None
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
        tools, agents = self._components(name, folder, manifest, manifest_file)
        flows_dir = confined(folder, manifest.flows, file=str(manifest_file), field="flows")
        flow_files: dict[str, Path] = {}
        if flows_dir.is_dir():
            for path in sorted([*flows_dir.glob("*.yaml"), *flows_dir.glob("*.yml")]):
                confined(
                    folder, str(path.relative_to(folder.resolve())), file=str(path), field="flows"
                )
                flow_files[path.stem] = path
        compiler = FlowCompiler(
            product=name,
            product_version=manifest.version,
            tools=tools,
            agents=agents,
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
            tools=tools,
            agents=agents,
            flow_files=flow_files,
            compiler=compiler,
        )

    def _components(
        self, name: str, folder: Path, manifest: Manifest, manifest_file: Path
    ) -> tuple[dict[str, ToolSpec], dict[str, AgentSpec]]:
        entries = (
            [manifest.components] if isinstance(manifest.components, str) else manifest.components
        )
        package = f"{PACKAGE_ROOT}.{_identifier(name)}"
        _fresh_package(package, folder.resolve())
        tools: dict[str, ToolSpec] = {}
        agents: dict[str, AgentSpec] = {}
        for entry in entries:
            path = confined(folder, entry, file=str(manifest_file), field="components")
            if path.suffix != ".py" or not path.is_file():
                raise FlowError(
                    f"components module '{entry}' is not a .py file in the product folder",
                    file=str(manifest_file),
                    field="components",
                )
            relative = path.relative_to(folder.resolve()).with_suffix("")
            module_name = ".".join([package, *relative.parts])
            try:
                module = importlib.import_module(module_name)
            except FlowError:
                raise
            except Exception as exc:
                raise FlowError(
                    f"importing components failed: {type(exc).__name__}: {exc}",
                    file=str(path),
                    field="components",
                ) from None
            for value in vars(module).values():
                tool_spec = getattr(value, TOOL_ATTR, None)
                if isinstance(tool_spec, ToolSpec):
                    _check_name("tool", tool_spec.name, path)
                    tools[tool_spec.name] = tool_spec
                agent_spec = getattr(value, AGENT_ATTR, None)
                if isinstance(agent_spec, AgentSpec):
                    _check_name("agent", agent_spec.name, path)
                    agents[agent_spec.name] = agent_spec
        return tools, agents

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
        return product.compiler.compile(spec, file=str(path), source=source)


def _check_schemas(flow: CompiledFlow) -> None:
    """Check every JSON Schema of a flow against its metaschema (slow import; validate only)."""
    from master_sdk.orchestrator.validation import schema_problem

    problem = schema_problem(flow.spec.inputs)
    if problem:
        raise FlowError(problem, file=flow.file, flow=flow.id, field="inputs")
    for step in flow.steps:
        if step.schema is not None:
            problem = schema_problem(step.schema)
            if problem:
                raise FlowError(problem, file=flow.file, flow=flow.id, step=step.id, field="schema")


def _check_name(kind: str, name: str, path: Path) -> None:
    """Registered names are canonical, so allow-lists can match them exactly."""
    problem = name_problem(name)
    if problem is not None:
        raise FlowError(
            f"{kind} name {name!r} {problem}",
            file=str(path),
            field="components",
            hint=f"give @{kind}(name=...) a plain ASCII name",
        )


def _identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _fresh_package(package: str, folder: Path) -> None:
    """Register an empty package for a product folder, dropping any earlier import of it."""
    if PACKAGE_ROOT not in sys.modules:
        root = types.ModuleType(PACKAGE_ROOT)
        root.__path__ = []
        sys.modules[PACKAGE_ROOT] = root
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[loaded]
    module = types.ModuleType(package)
    module.__path__ = [str(folder)]
    module.__package__ = package
    sys.modules[package] = module

"""Flow compiler: a validated :class:`FlowSpec` becomes a :class:`CompiledFlow`.

Everything that can be checked before a run starts is checked here — unknown tools,
agents, models, step ids, template variables and output fields, tool/agent input fields,
reject targets, policy loosening, tools and models outside the flow's allow-lists — and
reported as a :class:`FlowError` naming the file, flow, step and field. Templates are
compiled once (under the flow's render limits), and the allow-lists are turned into sets
once, so running a step costs no parsing and no normalising.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from master_sdk.errors import FlowError
from master_sdk.governance.budgets import AllowLists
from master_sdk.governance.names import name_problem, suggest
from master_sdk.orchestrator.templating import (
    Compiled,
    RenderLimits,
    TemplateEngine,
    TemplateError,
)

if TYPE_CHECKING:
    # pydantic's models: a flow read back from the flow cache (see flow_cache.py) is
    # built without them
    from pydantic import BaseModel

    from master_sdk.authoring import AgentSpec, ToolSpec
    from master_sdk.contracts.flow import AgentStep, FlowSpec, HitlStep, ToolStep, UserInputStep
    from master_sdk.contracts.policy import Policy

HITL_OUTPUT_FIELDS = frozenset({"approved", "by", "comment", "at"})
SCOPE_ROOTS = frozenset({"inputs", "steps", "run"})
STEP_KEYS = frozenset({"output", "status"})
RUN_KEYS = frozenset({"id", "product", "flow"})


@dataclass(slots=True)
class CompiledStep:
    """One step, ready to run."""

    index: int
    id: str
    type: str
    spec: ToolStep | AgentStep | HitlStep | UserInputStep
    when: Compiled | None = None
    input: Compiled | None = None
    show: Compiled | None = None
    tool: ToolSpec | None = None
    agent: AgentSpec | None = None
    model: str | None = None
    reject_to: int | None = None
    schema: dict[str, Any] | None = None
    output_fields: frozenset[str] | None = None
    name: str = ""
    validator: Any = None


@dataclass(slots=True)
class CompiledFlow:
    """A flow with its steps compiled, its policy merged and its identity hashed."""

    product: str
    id: str
    file: str
    spec: FlowSpec
    steps: list[CompiledStep]
    index: dict[str, int]
    output: Compiled | None
    policy: Policy
    flow_hash: str
    product_version: str
    source: str
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    input_validator: Any = None
    allow: AllowLists | None = None
    # set on a flow read back from the flow cache (see flow_cache.py): its tools and
    # agents are not loaded; this compiles the flow from its files, components included
    full: Callable[[], CompiledFlow] | None = None

    @property
    def ref(self) -> str:
        """``product/flow``."""
        return f"{self.product}/{self.id}"


def flow_hash(source: str, code: str = "") -> str:
    """The identity of a flow's text and its product's code, recorded by every run.

    ``code`` is the product's code hash (its Python files, manifest and ``config/``; see
    :mod:`master_sdk.products.fingerprint`): a run paused before its tools or agents were
    edited is resumed only when the change is allowed, like an edit of the flow itself.
    """
    text = source if not code else f"{source}\0{code}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class FlowCompiler:
    """Compiles one product's flows against its registered tools and agents."""

    def __init__(
        self,
        *,
        product: str,
        product_version: str,
        tools: Mapping[str, ToolSpec],
        agents: Mapping[str, AgentSpec],
        policy: Policy,
        templates: TemplateEngine,
        model_aliases: Mapping[str, str],
        model_names: Collection[str] = (),
        code_hash: str = "",
    ) -> None:
        self.product = product
        self.product_version = product_version
        self.tools = tools
        self.agents = agents
        self.policy = policy
        self.templates = templates
        self.model_aliases = model_aliases
        self.model_names = frozenset(model_names)
        self.code_hash = code_hash

    def compile(self, spec: FlowSpec, *, file: str, source: str) -> CompiledFlow:
        """Compile ``spec`` (already validated by pydantic) or raise FlowError."""
        from master_sdk.governance.policy import tighten

        flow = spec.id
        policy = tighten(self.policy, spec.policy, file=file, flow=flow)
        allow = AllowLists.of(policy)
        limits = RenderLimits(policy.max_rendered_chars, policy.max_render_ms)
        index: dict[str, int] = {}
        steps: list[CompiledStep] = []
        for position, step_spec in enumerate(spec.steps):
            if step_spec.id in index:
                raise FlowError(
                    "duplicate step id", file=file, flow=flow, step=step_spec.id, field="id"
                )
            index[step_spec.id] = position
            steps.append(
                self._step(position, step_spec, file=file, flow=flow, allow=allow, limits=limits)
            )
        for step in steps:
            self._check_step(step, steps, index, spec, file=file, flow=flow)
        output = None
        if spec.output is not None:
            output = self._template(
                spec.output, file=file, flow=flow, step=None, field="output", limits=limits
            )
            self._check_refs(
                output,
                spec,
                steps,
                index,
                before=len(steps),
                file=file,
                flow=flow,
                step=None,
                field="output",
            )
        return CompiledFlow(
            product=self.product,
            id=flow,
            file=file,
            spec=spec,
            steps=steps,
            index=index,
            output=output,
            policy=policy,
            flow_hash=flow_hash(source, self.code_hash),
            product_version=self.product_version,
            source=source,
            model_aliases=self.model_aliases,
            allow=allow,
        )

    def _template(
        self,
        value: Any,
        *,
        file: str,
        flow: str,
        step: str | None,
        field: str,
        limits: RenderLimits,
    ) -> Compiled:
        try:
            return self.templates.compile(value, limits=limits)
        except TemplateError as exc:
            raise FlowError(str(exc), file=file, flow=flow, step=step, field=field) from None

    def _step(
        self,
        position: int,
        spec: ToolStep | AgentStep | HitlStep | UserInputStep,
        *,
        file: str,
        flow: str,
        allow: AllowLists,
        limits: RenderLimits,
    ) -> CompiledStep:
        from master_sdk.contracts.flow import AgentStep, HitlStep, ToolStep

        step = CompiledStep(index=position, id=spec.id, type=spec.type, spec=spec)
        if spec.when is not None:
            try:
                step.when = self.templates.compile_guard(spec.when, limits=limits)
            except TemplateError as exc:
                raise FlowError(
                    str(exc), file=file, flow=flow, step=spec.id, field="when"
                ) from None
        if isinstance(spec, ToolStep):
            tool = self.tools.get(spec.tool)
            if tool is None:
                meant = suggest(spec.tool, self.tools)
                raise FlowError(
                    f"unknown tool '{spec.tool}'"
                    + (f"; did you mean '{meant}'? names match exactly" if meant else ""),
                    file=file,
                    flow=flow,
                    step=spec.id,
                    field="tool",
                    hint=f"registered tools: {', '.join(sorted(self.tools)) or '(none)'}",
                )
            refused = allow.tool_refusal(tool.name)
            if refused is not None:
                raise FlowError(
                    f"{refused} of this flow's policy",
                    file=file,
                    flow=flow,
                    step=spec.id,
                    field="tool",
                    hint=f"allowed_tools: {', '.join(sorted(allow.tools or ())) or '(none)'}",
                )
            step.tool = tool
            step.name = tool.name
            step.input = self._template(
                spec.input, file=file, flow=flow, step=spec.id, field="input", limits=limits
            )
            step.output_fields = _model_fields(tool.output_model)
            self._check_input_fields(spec.input, tool.input_model, file, flow, spec.id, tool.name)
        elif isinstance(spec, AgentStep):
            found = self.agents.get(spec.agent)
            if found is None:
                raise FlowError(
                    f"unknown agent '{spec.agent}'",
                    file=file,
                    flow=flow,
                    step=spec.id,
                    field="agent",
                    hint=f"registered agents: {', '.join(sorted(self.agents)) or '(none)'}",
                )
            step.agent = found
            step.name = found.name
            step.model = spec.model or self.model_aliases.get(found.name) or found.model
            self._check_model(step.model, allow, file=file, flow=flow, step=spec.id)
            step.input = self._template(
                spec.input, file=file, flow=flow, step=spec.id, field="input", limits=limits
            )
            step.output_fields = _model_fields(found.output_model)
            self._check_input_fields(spec.input, found.input_model, file, flow, spec.id, found.name)
        elif isinstance(spec, HitlStep):
            step.name = spec.id
            if spec.show is not None:
                step.show = self._template(
                    spec.show, file=file, flow=flow, step=spec.id, field="show", limits=limits
                )
            step.output_fields = HITL_OUTPUT_FIELDS
        else:
            step.name = spec.id
            schema = spec.schema_
            if schema.get("type", "object") != "object":
                raise FlowError(
                    "a user_input schema must describe an object (type: object)",
                    file=file,
                    flow=flow,
                    step=spec.id,
                    field="schema.type",
                )
            step.schema = schema
            props = schema.get("properties")
            step.output_fields = frozenset(props) if isinstance(props, dict) else None
        return step

    def _check_model(
        self, model: str, allow: AllowLists, *, file: str, flow: str, step: str
    ) -> None:
        """An agent step's model is canonical, configured and allowed (the agent may still
        ask for another at run time; that is checked then)."""
        problem = name_problem(model)
        logical = self.model_aliases.get(model, model)
        if problem is None and self.model_names and logical not in self.model_names:
            meant = suggest(logical, self.model_names)
            problem = "is not a model in configs/models.yaml" + (
                f"; did you mean '{meant}'?" if meant else ""
            )
        if problem is not None:
            raise FlowError(
                f"model '{model}' {problem}",
                file=file,
                flow=flow,
                step=step,
                field="model",
                hint=f"models: {', '.join(sorted(self.model_names)) or '(none)'}",
            )
        refused = allow.model_refusal(logical)
        if refused is not None:
            raise FlowError(
                f"{refused} of this flow's policy",
                file=file,
                flow=flow,
                step=step,
                field="model",
                hint=f"allowed_models: {', '.join(sorted(allow.models or ())) or '(none)'}",
            )

    def _check_input_fields(
        self,
        given: Mapping[str, Any],
        model: type[BaseModel],
        file: str,
        flow: str,
        step: str,
        target: str,
    ) -> None:
        known = model.model_fields
        for key in given:
            if key not in known:
                raise FlowError(
                    f"'{target}' has no input '{key}'",
                    file=file,
                    flow=flow,
                    step=step,
                    field=f"input.{key}",
                    hint=f"inputs of {target}: {', '.join(known) or '(none)'}",
                )
        for name, info in known.items():
            if info.is_required() and name not in given:
                raise FlowError(
                    f"'{target}' needs input '{name}'",
                    file=file,
                    flow=flow,
                    step=step,
                    field=f"input.{name}",
                )

    def _check_step(
        self,
        step: CompiledStep,
        steps: list[CompiledStep],
        index: Mapping[str, int],
        spec: FlowSpec,
        *,
        file: str,
        flow: str,
    ) -> None:
        from master_sdk.contracts.flow import HitlStep

        for fieldname, compiled in (
            ("when", step.when),
            ("input", step.input),
            ("show", step.show),
        ):
            if compiled is not None:
                self._check_refs(
                    compiled,
                    spec,
                    steps,
                    index,
                    before=step.index,
                    file=file,
                    flow=flow,
                    step=step.id,
                    field=fieldname,
                )
        if isinstance(step.spec, HitlStep) and step.spec.on_reject != "stop":
            target = index.get(step.spec.on_reject)
            if target is None or target <= step.index:
                raise FlowError(
                    f"on_reject must be 'stop' or the id of a later step, not "
                    f"'{step.spec.on_reject}'",
                    file=file,
                    flow=flow,
                    step=step.id,
                    field="on_reject",
                    hint="later steps: "
                    + (", ".join(s.id for s in steps[step.index + 1 :]) or "(none)"),
                )
            step.reject_to = target

    def _check_refs(
        self,
        compiled: Compiled,
        spec: FlowSpec,
        steps: list[CompiledStep],
        index: Mapping[str, int],
        *,
        before: int,
        file: str,
        flow: str,
        step: str | None,
        field: str,
    ) -> None:
        for path in compiled.refs:
            problem = self._ref_problem(path, spec, steps, index, before)
            if problem:
                raise FlowError(
                    f"template variable '{'.'.join(path)}': {problem}",
                    file=file,
                    flow=flow,
                    step=step,
                    field=field,
                )

    @staticmethod
    def _ref_problem(
        path: tuple[str, ...],
        spec: FlowSpec,
        steps: list[CompiledStep],
        index: Mapping[str, int],
        before: int,
    ) -> str | None:
        root = path[0]
        if root not in SCOPE_ROOTS:
            return f"unknown variable '{root}' (use inputs, steps or run)"
        if root == "inputs":
            props = spec.inputs.get("properties")
            if len(path) > 1 and isinstance(props, dict) and path[1] not in props:
                return f"the flow's inputs have no '{path[1]}' (inputs: {', '.join(props)})"
            return None
        if root == "run":
            if len(path) > 1 and path[1] not in RUN_KEYS:
                return f"run has no '{path[1]}' (run: {', '.join(sorted(RUN_KEYS))})"
            return None
        if len(path) < 2:
            return None
        target = index.get(path[1])
        if target is None:
            return f"no step '{path[1]}' in this flow"
        if target >= before:
            return f"step '{path[1]}' has not run yet at this point"
        if len(path) > 2 and path[2] not in STEP_KEYS:
            return f"a step exposes only output and status, not '{path[2]}'"
        fields = steps[target].output_fields
        if len(path) > 3 and path[2] == "output" and fields is not None and path[3] not in fields:
            return (
                f"step '{path[1]}' output has no '{path[3]}' (fields: {', '.join(sorted(fields))})"
            )
        return None


def _model_fields(model: type[BaseModel] | None) -> frozenset[str] | None:
    return frozenset(model.model_fields) if model is not None else None

"""A flow as a diagram: Mermaid text, and a self-contained SVG that needs no JavaScript.

Both are built from the flow's step list as :attr:`FlowView.steps` gives it (``id``,
``type``, ``name``, ``when``, ``on_reject``), so they show exactly what the orchestrator
runs: the steps in order, each ``when:`` guard as a decision whose "no" branch skips the
step, and each approval's reject branch — to the end of the run (``on_reject: stop``) or
to a later step.

JupyterLab (4.1 and later) draws a fenced ``mermaid`` block in Markdown output itself,
offline; :func:`mermaid_markdown` wraps the text that way.

Example:
    >>> steps = [{"id": "echo", "type": "tool", "name": "echo", "when": None,
    ...           "on_reject": None}]
    >>> print(mermaid(steps))
    flowchart TD
      start([start])
      s0["echo<br/>tool: echo"]
      done([completed])
      start --> s0
      s0 --> done
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

StepData = Mapping[str, Any]

_KIND = {"tool": "tool", "agent": "agent", "hitl": "approval", "user_input": "user input"}
# Mermaid node shapes by step type: box, rounded box, hexagon, parallelogram.
_SHAPE = {
    "tool": ('["', '"]'),
    "agent": ('("', '")'),
    "hitl": ('{{"', '"}}'),
    "user_input": ('[/"', '"/]'),
}


def _label(text: str) -> str:
    """Text safe inside a quoted Mermaid label: its entity codes replace what could end the
    label or be read as markup."""
    out = []
    for char in text:
        if char in '"#<>&`|{}[]();':
            out.append(f"#{ord(char)};")
        else:
            out.append(char)
    return "".join(out)


def _describe(step: StepData) -> str:
    kind = _KIND.get(str(step.get("type")), str(step.get("type")))
    name = step.get("name")
    if step.get("type") in ("tool", "agent") and name:
        return f"{kind}: {name}"
    return kind


def mermaid(steps: Sequence[StepData]) -> str:
    """The flow as a Mermaid ``flowchart`` (top to bottom).

    Nodes are named ``s0``, ``s1``, ... by position (step ids need not be valid Mermaid
    names); a guarded step gets a decision node ``g<i>`` in front of it; the run's ends are
    ``start``, ``done`` (completed) and ``rejected``.
    """
    lines = ["flowchart TD", "  start([start])"]
    edges: list[str] = []
    index = {str(step["id"]): i for i, step in enumerate(steps)}
    any_stop = False

    def entry(i: int) -> str:
        if i >= len(steps):
            return "done"
        return f"g{i}" if steps[i].get("when") else f"s{i}"

    for i, step in enumerate(steps):
        open_, close = _SHAPE.get(str(step.get("type")), ('["', '"]'))
        text = _label(f"{step['id']}") + "<br/>" + _label(_describe(step))
        if step.get("when"):
            lines.append(f'  g{i}{{"{_label("when " + str(step["when"]))}"}}')
            edges.append(f"  g{i} -->|yes| s{i}")
            edges.append(f"  g{i} -.->|no: skip| {entry(i + 1)}")
        lines.append(f"  s{i}{open_}{text}{close}")
        if step.get("type") == "hitl":
            edges.append(f"  s{i} -->|approved| {entry(i + 1)}")
            target = step.get("on_reject") or "stop"
            if target == "stop":
                any_stop = True
                edges.append(f"  s{i} -.->|rejected| rejected")
            elif target in index:
                edges.append(f"  s{i} -.->|rejected| {entry(index[str(target)])}")
        else:
            edges.append(f"  s{i} --> {entry(i + 1)}")
    lines.append("  done([completed])")
    if any_stop:
        lines.append("  rejected([rejected])")
    lines.append(f"  start --> {entry(0)}")
    lines.extend(edges)
    return "\n".join(lines)


def mermaid_markdown(steps: Sequence[StepData]) -> str:
    """:func:`mermaid` in a fenced block, as JupyterLab renders it."""
    return f"```mermaid\n{mermaid(steps)}\n```\n"


# ---------------------------------------------------------------------------------- SVG

_BOX_W = 230
_BOX_H = 44
_GAP = 34
_GUARD_H = 30
_LEFT = 20
_TOP = 16
_FILL = {"tool": "#e3f2fd", "agent": "#ede7f6", "hitl": "#fff3e0", "user_input": "#e8f5e9"}


def svg(steps: Sequence[StepData]) -> str:
    """The flow as a standalone SVG document: one box per step in order, guards written
    above their step with a dashed "skip" line past it, reject branches as dashed red
    lines on the right. Every text is XML-escaped."""
    index = {str(step["id"]): i for i, step in enumerate(steps)}
    tops: list[float] = []
    y = float(_TOP + 30)
    for step in steps:
        if step.get("when"):
            y += _GUARD_H
        tops.append(y)
        y += _BOX_H + _GAP
    end_y = y
    height = end_y + 40
    reject_lanes = sum(1 for s in steps if s.get("type") == "hitl")
    width = _LEFT + _BOX_W + 60 + 24 * reject_lanes + 90
    mid = _LEFT + _BOX_W / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
        "<defs><marker id='arrow' markerWidth='8' markerHeight='8' refX='7' refY='4' "
        "orient='auto'><path d='M0,0 L8,4 L0,8 z' fill='#555'/></marker>"
        "<marker id='arrow-red' markerWidth='8' markerHeight='8' refX='7' refY='4' "
        "orient='auto'><path d='M0,0 L8,4 L0,8 z' fill='#b00020'/></marker></defs>",
        _terminal(mid, _TOP + 10, "start"),
    ]
    previous_bottom = float(_TOP + 20)
    lane = 0
    for i, step in enumerate(steps):
        top = tops[i]
        guard_top = top - _GUARD_H if step.get("when") else top
        parts.append(_arrow(mid, previous_bottom, mid, guard_top))
        if step.get("when"):
            parts.append(
                f'<text x="{mid:.0f}" y="{guard_top + 18:.0f}" text-anchor="middle" '
                f'font-style="italic" fill="#555">when {escape(str(step["when"]))}</text>'
            )
            skip_to = (
                tops[i + 1] - (_GUARD_H if steps[i + 1].get("when") else 0)
                if (i + 1 < len(steps))
                else end_y
            )
            x = _LEFT - 8
            parts.append(
                f'<path d="M{_LEFT:.0f},{guard_top + 14:.0f} L{x:.0f},{guard_top + 14:.0f} '
                f'L{x:.0f},{skip_to - 6:.0f} L{mid - 20:.0f},{skip_to - 6:.0f}" fill="none" '
                f'stroke="#999" stroke-dasharray="4 3" marker-end="url(#arrow)"/>'
            )
        fill = _FILL.get(str(step.get("type")), "#f5f5f5")
        parts.append(
            f'<rect x="{_LEFT}" y="{top:.0f}" width="{_BOX_W}" height="{_BOX_H}" rx="6" '
            f'fill="{fill}" stroke="#555"/>'
            f'<text x="{mid:.0f}" y="{top + 18:.0f}" text-anchor="middle" '
            f'font-weight="bold">{escape(str(step["id"]))}</text>'
            f'<text x="{mid:.0f}" y="{top + 34:.0f}" text-anchor="middle" fill="#444">'
            f"{escape(_describe(step))}</text>"
        )
        if step.get("type") == "hitl":
            lane += 1
            x = _LEFT + _BOX_W + 24 * lane
            target = step.get("on_reject") or "stop"
            if target in index and target != "stop":
                to_y = tops[index[str(target)]] + _BOX_H / 2
                label = f"rejected → {target}"
            else:
                to_y = end_y + 10
                label = "rejected → end"
            parts.append(
                f'<path d="M{_LEFT + _BOX_W:.0f},{top + _BOX_H / 2:.0f} L{x:.0f},'
                f"{top + _BOX_H / 2:.0f} L{x:.0f},{to_y:.0f} L{_LEFT + _BOX_W + 4:.0f},"
                f'{to_y:.0f}" fill="none" stroke="#b00020" stroke-dasharray="5 3" '
                f'marker-end="url(#arrow-red)"/>'
                f'<text x="{x + 4:.0f}" y="{top + _BOX_H / 2 - 4:.0f}" fill="#b00020">'
                f"{escape(label)}</text>"
            )
        previous_bottom = top + _BOX_H
    parts.append(_arrow(mid, previous_bottom, mid, end_y))
    parts.append(_terminal(mid, end_y + 10, "end"))
    parts.append("</svg>")
    return "".join(parts)


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return (
        f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2 - 2:.0f}" stroke="#555" '
        f'marker-end="url(#arrow)"/>'
    )


def _terminal(x: float, y: float, text: str) -> str:
    return (
        f'<rect x="{x - 40:.0f}" y="{y - 10:.0f}" width="80" height="20" rx="10" '
        f'fill="#fafafa" stroke="#555"/>'
        f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">{escape(text)}</text>'
    )

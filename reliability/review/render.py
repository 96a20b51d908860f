"""Post-mortem as Markdown or self-contained HTML, from Jinja2 templates (files in `templates/`).

Every value from data is escaped on its way out, whatever the template does: the environments' `finalize`
hook shows control characters (ANSI escapes, bidi overrides) as visible escapes, then the HTML
environment autoescapes (`<`, `&`, quotes) and the Markdown one escapes what would become HTML, a table
cell break or a link. Reviewers' free text from the notes file is Markdown, rendered by markdown-it-py
with raw HTML disabled.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path

from reliability.review.postmortem import GraphNode, PostMortem, human_seconds
from reliability.terminal import printable

TEMPLATES = Path(__file__).parent / "templates"
ROLE_COLOURS = {
    "root": "#c62828",
    "failing": "#ef6c00",
    "blocked": "#6a1b9a",
    "exposure": "#1565c0",
    "downstream": "#757575",
}
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 34, 60, 18, 16
LABEL_CHARS = 24


class Raw(str):
    """Text already escaped for its target (a Mermaid block built by `mermaid`): left as it is."""


def md_text(value: object) -> str:
    """A data value made inert in Markdown: no HTML, no table-cell break, no link, no code span."""
    if isinstance(value, Raw):
        return value
    text = printable(value)
    for old, new in (("&", "&amp;"), ("<", "&lt;"), ("|", "\\|"), ("`", "'"),
                     ("[", "\\["), ("]", "\\]"), ("*", "\\*")):  # fmt: skip
        text = text.replace(old, new)
    return text


def md_code(value: object) -> Raw:
    """A data value as a Markdown code span (queries, records): shown verbatim, never interpreted."""
    return Raw("`" + printable(value).replace("`", "'") + "`")


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "n/a"


@cache
def _environment(kind: str):  # noqa: ANN202
    import jinja2
    from markupsafe import Markup

    def html_finalize(value: object) -> object:
        return value if isinstance(value, Markup) else printable(value)

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=kind == "html",
        finalize=html_finalize if kind == "html" else md_text,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ts"] = _ts
    env.filters["code"] = md_code if kind == "md" else (lambda value: value)
    env.filters["seconds"] = human_seconds
    env.filters["markdown"] = notes_markdown if kind == "html" else notes_markdown_source
    return env


def notes_markdown(text: str):  # noqa: ANN201
    """Reviewers' Markdown as HTML; raw HTML in it is shown as text, never interpreted."""
    from markdown_it import MarkdownIt
    from markupsafe import Markup

    return Markup(MarkdownIt("commonmark", {"html": False}).render(printable_block(text)))


def notes_markdown_source(text: str) -> Raw:
    """Reviewers' Markdown kept as Markdown, with raw HTML made inert."""
    return Raw(printable_block(text).replace("&", "&amp;").replace("<", "&lt;"))


def printable_block(text: str) -> str:
    """Like `printable`, but keeps line breaks (Markdown needs them)."""
    return "\n".join(printable(line) for line in str(text).splitlines())


def layers(nodes: list[GraphNode], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's column: the longest path to it from a root, so every edge points right (BFS depth
    would put a node beside its own child when two paths of different lengths reach it)."""
    layer = {n.key: (0 if n.role == "root" else 1) for n in nodes}
    for _ in range(len(nodes)):  # relax: at most |nodes| rounds in a DAG
        changed = False
        for parent, child in edges:
            if parent in layer and child in layer and layer[child] < layer[parent] + 1:
                layer[child] = layer[parent] + 1
                changed = True
        if not changed:
            break
    return layer


def layout(nodes: list[GraphNode], edges: list[tuple[str, str]] = ()) -> tuple[dict[str, tuple[int, int]], int, int]:
    """Left-to-right layers: (x, y) of each node, and the drawing's width and height."""
    column_of = layers(nodes, list(edges)) if edges else {n.key: n.depth for n in nodes}
    columns: dict[int, list[GraphNode]] = {}
    for n in nodes:
        columns.setdefault(column_of[n.key], []).append(n)
    pos: dict[str, tuple[int, int]] = {}
    for depth, column in sorted(columns.items()):
        for row, n in enumerate(sorted(column, key=lambda n: n.key)):
            pos[n.key] = (PAD + depth * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max((len(c) for c in columns.values()), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return pos, width, height + 30  # room for the legend


def svg_model(pm: PostMortem) -> dict[str, object]:
    pos, width, height = layout(pm.nodes, pm.edges)
    nodes = [
        {"key": n.key, "role": n.role, "x": pos[n.key][0], "y": pos[n.key][1], "colour": ROLE_COLOURS[n.role],
         "label": n.key if len(n.key) <= LABEL_CHARS else n.key[: LABEL_CHARS - 1] + "\u2026"}
        for n in pm.nodes
    ]  # fmt: skip
    edges = [
        {"x1": pos[a][0] + NODE_W, "y1": pos[a][1] + NODE_H // 2, "x2": pos[b][0], "y2": pos[b][1] + NODE_H // 2}
        for a, b in pm.edges
        if a in pos and b in pos
    ]
    legend = [{"role": r, "colour": c, "x": PAD + i * 120} for i, (r, c) in enumerate(ROLE_COLOURS.items())]
    return {"width": max(width, 620), "height": height, "nodes": nodes, "edges": edges, "legend": legend,
            "node_w": NODE_W, "node_h": NODE_H, "legend_y": height - 22}  # fmt: skip


def _mermaid_label(key: str) -> str:
    text = printable(key)
    for old, new in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("`", "#96;")):
        text = text.replace(old, new)
    return text


def mermaid(pm: PostMortem) -> Raw:
    """The blast radius as a Mermaid flowchart: ids are generated, every label quoted and escaped."""
    ids = {n.key: f"n{i}" for i, n in enumerate(pm.nodes)}
    lines = ["flowchart LR"]
    lines += [f'  {ids[n.key]}["{_mermaid_label(n.key)}"]:::{n.role}' for n in pm.nodes]
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in pm.edges if a in ids and b in ids]
    lines += [f"  classDef {role} fill:{colour},color:#fff" for role, colour in ROLE_COLOURS.items()]
    return Raw("\n".join(lines))


def render(pm: PostMortem, fmt: str) -> str:
    if fmt not in ("md", "html"):
        raise ValueError(f"unknown format {fmt!r} (md or html)")
    template = _environment(fmt).get_template(f"postmortem.{fmt}.j2")
    return template.render(pm=pm, svg=svg_model(pm), mermaid=mermaid(pm))

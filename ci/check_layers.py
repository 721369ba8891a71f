#!/usr/bin/env python3
"""Checks the layering of the server's src/ (docs/architecture.md, "Source layout").

Fails (exit 1, one line per problem) when:
- a module imports from a layer above its own, or from another module of its own layer
  (a `crate::...` path naming a module of that layer or a higher one);
- modules import each other in a cycle (file-level graph of `crate::`, `super::` and
  `self::` paths, whatever their layer);
- `ws/` names `crate::protocol` or `crate::metrics` (the transport knows only frames);
- a top-level module is not listed in LAYERS (a new one must be given its place);
- a source file is longer than MAX_LINES.

Only code is read: comments and string literals are skipped. Standard library only.
Usage: ci/check_layers.py [SRC_DIR]   (default: src/ next to ci/)
"""

import re
import sys
from pathlib import Path

# Bottom first. A module may use the modules of the layers below its own, never those of its
# own layer or above. `channels` (broker, engines, hub) sits under `state`, which holds it.
LAYERS = [
    ("foundation", {"label", "config", "logging", "faults", "ratelimit", "registry", "lifecycle"}),
    ("protocol", {"protocol"}),
    ("metrics", {"metrics"}),
    ("channels", {"channels"}),
    ("state", {"state"}),
    ("transport", {"ws"}),
    ("sessions", {"session"}),
    ("http", {"http"}),
    ("server", {"server"}),
]
# The transport knows only frames.
FORBIDDEN = {"ws": {"protocol", "metrics"}}
MAX_LINES = 450
# Crate roots: they declare the modules, they are no layer.
ROOTS = {"lib.rs", "main.rs"}

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE = re.compile(r"\buse\s+([^;]*);", re.S)
CODE_TOKENS = re.compile(
    r'//[^\n]*|/\*.*?\*/|b?r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'',
    re.S,
)


def strip_comments_and_strings(text):
    """Blanks comments, string and char literals, keeping line breaks (for line numbers)."""

    def blank(match):
        return re.sub(r"[^\n]", " ", match.group(0))

    return CODE_TOKENS.sub(blank, text)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"] (`self` inside braces = the prefix)."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, char in enumerate(tree):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                prefix = tree[:start].rstrip(":")
                inner = tree[start + 1:i]
                out = []
                for part in split_top_level(inner):
                    for leaf in expand_use(part):
                        out.append(prefix if leaf == "self" else f"{prefix}::{leaf}")
                return out
    return [tree] if tree else []


def split_top_level(text):
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    parts.append(current)
    return [p for p in parts if p]


def module_of(path, src):
    """src/http/router.rs -> ("http", "router"); src/http/mod.rs -> ("http",)."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def resolve(kind, segments, here, modules):
    """The module a path names: the longest prefix of it that is a module of the crate."""
    if kind == "crate":
        base = ()
    elif kind == "self":
        base = here
    else:  # super, possibly repeated: super::super::x
        base = here[:-1]
        while segments and segments[0] == "super":
            base, segments = base[:-1], segments[1:]
    full = base + tuple(segments)
    for end in range(len(full), 0, -1):
        if full[:end] in modules:
            return full[:end]
    return None


INLINE_MOD = re.compile(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


def inline_modules(code):
    """(start, end, name) of every inline `mod name { ... }` block (tests, mostly)."""
    blocks = []
    for match in INLINE_MOD.finditer(code):
        depth, i = 0, match.end() - 1
        while i < len(code):
            depth += code[i] == "{"
            depth -= code[i] == "}"
            if depth == 0:
                break
            i += 1
        blocks.append((match.start(), i, match.group(1)))
    return blocks


def paths_in(code):
    """Every path that may name a module (`crate::`, `super::`, `self::`, or a bare `use a::b`
    relative to the current module), with its line number and the inline modules it is in."""
    blocks = inline_modules(code)

    def nesting(offset):
        return tuple(name for start, end, name in blocks if start < offset < end)

    found = []
    for match in USE.finditer(code):
        line = code.count("\n", 0, match.start()) + 1
        for leaf in expand_use(match.group(1)):
            head, _, rest = leaf.partition("::")
            if head in ("crate", "super", "self") and rest:
                found.append((line, nesting(match.start()), head, rest.split("::")))
            elif rest:
                found.append((line, nesting(match.start()), "self", leaf.split("::")))
    code_without_uses = USE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)
    for match in PATH.finditer(code_without_uses):
        line = code_without_uses.count("\n", 0, match.start()) + 1
        segments = match.group(2).strip(":").split("::")
        found.append((line, nesting(match.start()), match.group(1), segments))
    return found


def find_cycle(graph):
    """One cycle of the graph as a list of nodes, or None."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def check(src):
    problems = []
    rank = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}
    layer_name = {name: layer for layer, names in LAYERS for name in names}
    files = sorted(p for p in src.rglob("*.rs"))
    modules = {module_of(p, src) for p in files if p.name not in ROOTS}
    graph = {}
    for path in files:
        rel = path.relative_to(src.parent)
        text = path.read_text()
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        if lines > MAX_LINES:
            problems.append(f"{rel}: {lines} lines, more than {MAX_LINES}")
        if path.name in ROOTS:
            continue
        here = module_of(path, src)
        top = here[0]
        if top not in rank:
            problems.append(
                f"{rel}: module `{top}` has no layer: add it to LAYERS in {Path(__file__).name}"
            )
            continue
        for line, inline, kind, segments in paths_in(strip_comments_and_strings(text)):
            target = resolve(kind, segments, here + inline, modules)
            if target is None or here[: len(target)] == target and len(target) == len(here):
                continue
            graph.setdefault(here, set()).add(target)
            other = target[0]
            if other == top:
                continue
            where = f"{rel}:{line}: `{top}` uses `{'::'.join(target)}`"
            if other in FORBIDDEN.get(top, ()):
                problems.append(
                    f"{where}: {top}/ must not use {other} (the transport knows only frames)"
                )
            elif other not in rank:
                problems.append(f"{where}: `{other}` has no layer")
            elif rank[other] == rank[top]:
                problems.append(f"{where}: a sideways import within the {layer_name[top]} layer")
            elif rank[other] > rank[top]:
                problems.append(
                    f"{where}: an upward import ({layer_name[top]} -> {layer_name[other]})"
                )
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import cycle: " + " -> ".join("::".join(m) for m in cycle))
    return problems


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_layers: {len(problems)} problem(s) in {src}")
        return 1
    count = sum(1 for _ in src.rglob("*.rs"))
    print(f"check_layers: {count} files, {len(LAYERS)} layers, no upward import, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())

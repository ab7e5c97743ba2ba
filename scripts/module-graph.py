#!/usr/bin/env python3
"""Draws the imports of the host's crates and fails on a circle.

Two graphs, both from the sources, no build needed:

- crates: each crate's `durable-*` dependencies (Cargo.toml), checked
  against the layers ARCHITECTURE.md states (a crate may depend only on
  crates of lower layers);
- modules: within each crate, module A -> module B when A's code names a
  path that resolves to B (`use`, `crate::`, `super::`, `self::`, a child
  module by its name), following imports and re-exports to the module that
  defines the item. A `pub use` (a module's interface) and `#[cfg(test)]`
  modules (tests may use anything) make no edges; every other edge counts,
  between a parent and its children too, and a circle is reported.

    scripts/module-graph.py          # check; exit 1 on a circle or an upward edge
    scripts/module-graph.py --dot    # print both graphs for Graphviz
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Layer of each crate: a crate may depend on crates of lower layers only.
LAYERS = {
    "durable-core": 0,
    "durable-store": 1,
    "durable-http": 1,
    "durable-otlp": 1,
    "durable-api-model": 1,
    "durable-kit": 1,
    "durable": 2,  # the runtime
    "durable-server": 3,
    "durable-cli": 4,
    "durable-bench": 4,
    "durable-e2e": 5,
}

CRATE_DIRS = ["crates/core", "crates/store", "crates/http", "crates/otlp", "crates/api-model",
              "crates/runtime", "crates/server", "crates/kit", "crates/cli", "crates/bench",
              "tests/e2e"]


def package_name(manifest):
    m = re.search(r'^\[package\][^\[]*?^name\s*=\s*"([^"]+)"', manifest, re.M | re.S)
    return m.group(1) if m else None


def durable_deps(manifest):
    """`durable*` names in [dependencies] and [dev-dependencies]."""
    deps = set()
    section = None
    for line in manifest.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s
            continue
        if section in ("[dependencies]", "[dev-dependencies]", "[build-dependencies]"):
            m = re.match(r'(durable[a-z-]*)\s*=', s)
            if m:
                deps.add(m.group(1))
    return deps


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    # Line comments (doc comments included) and string literals hold paths
    # that are prose, not imports.
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def module_files(src):
    """{module path tuple: file} for a crate's src directory."""
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] in ("lib", "main") and len(parts) == 1:
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        if parts and parts[0] == "bin":
            continue
        mods[tuple(parts)] = f
    return mods


def use_trees(text):
    """Each `use` statement's tree as a string (`pub use` marked)."""
    for m in re.finditer(r"\b(pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);", text):
        yield bool(m.group(1)), m.group(2)


def expand(tree):
    """`a::{b, c::{d as e}}` -> ['a::b', 'a::c::d'] (renames dropped)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        parts.append(cur)
    out = []
    for p in parts:
        for e in expand(p):
            out.append(prefix + e if e != "self" else prefix.rstrip(":"))
    return out


def blocks(text, opening):
    """(start, end) of each block whose opening line matches `opening`."""
    spans = []
    for m in re.finditer(opening, text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += text[i] == "{"
            depth -= text[i] == "}"
            i += 1
        spans.append((m.start(), i))
    return spans


class Crate:
    def __init__(self, src):
        self.src = src
        self.mods = module_files(src)
        self.texts = {m: strip_comments(f.read_text()) for m, f in self.mods.items()}
        self.reexports = {m: {} for m in self.mods}
        for m, text in self.texts.items():
            # Every `use` binds a name that paths through this module can
            # reach (`super::Name` finds a parent's private import too).
            for _public, tree in use_trees(text):
                for path in expand(tree):
                    segs = [s for s in path.split("::") if s]
                    if not segs or segs[-1] == "*":
                        continue
                    name = segs[-1]
                    self.reexports[m][name] = (m, segs)

    def absolute(self, current, segs, in_inline=False):
        """Module path and the rest of `segs`, as seen from `current`."""
        base = list(current)
        if not segs:
            return None
        if segs[0] == "crate":
            base, segs = [], segs[1:]
        elif segs[0] == "self":
            segs = segs[1:]
        elif segs[0] == "super":
            ups = 0
            while segs and segs[0] == "super":
                ups += 1
                segs = segs[1:]
            if in_inline:
                ups -= 1  # the first `super` leaves the inline module
            if ups > len(base):
                return None
            base = base[: len(base) - ups]
        elif tuple(base + [segs[0]]) in self.mods:
            pass  # a child module by its name
        else:
            return None  # another crate, or std
        path = list(base)
        rest = list(segs)
        while rest and tuple(path + [rest[0]]) in self.mods:
            path.append(rest.pop(0))
        return tuple(path), rest

    def resolve(self, current, segs, in_inline=False, seen=None):
        found = self.absolute(current, segs, in_inline)
        if found is None:
            return None
        target, rest = found
        seen = seen or set()
        if rest and rest[0] in self.reexports.get(target, {}) and (target, rest[0]) not in seen:
            seen.add((target, rest[0]))
            where, path = self.reexports[target][rest[0]]
            deeper = self.resolve(where, path, False, seen)
            # A re-export of another crate's item is no edge in this one.
            return deeper
        return target

    def edges(self):
        out = set()
        for m, text in self.texts.items():
            # Paths inside an inline `mod x { ... }` (tests) see `super` as
            # this file's module.
            test_spans = blocks(text, r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{")
            inline_spans = blocks(text, r"\bmod\s+\w+\s*\{")

            def inline(pos):
                return any(a <= pos < b for a, b in inline_spans)

            def in_test(pos):
                return any(a <= pos < b for a, b in test_spans)

            paths = []
            for um in re.finditer(r"\b(pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);", text):
                if um.group(1):
                    continue  # a re-export is this module's interface, not its code's need
                for p in expand(um.group(2)):
                    paths.append((um.start(), p))
            for pm in re.finditer(r"(?<![\w:$])((?:crate|super|self)(?:::\w+)+)", text):
                paths.append((pm.start(), pm.group(1)))
            # A child module named in code: `tree::build(...)`.
            for pm in re.finditer(r"(?<![\w:$])(\w+)((?:::\w+)+)", text):
                if tuple(m) + (pm.group(1),) in self.mods:
                    paths.append((pm.start(), pm.group(1) + pm.group(2)))
            for pos, p in paths:
                if in_test(pos):
                    continue  # tests may use anything
                segs = [s for s in p.split("::") if s and s != "*"]
                t = self.resolve(m, segs, inline(pos))
                if t is None or t == m:
                    continue
                out.add((m, t))
        return out


def cycles(nodes, edges):
    """Strongly connected components with more than one module."""
    graph = {n: [] for n in nodes}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in list(graph):
        if v not in index:
            visit(v)
    return comps


def name(m):
    return "::".join(m) or "crate"


def main():
    dot = "--dot" in sys.argv
    failed = False
    crate_edges = []
    for d in CRATE_DIRS:
        manifest = (ROOT / d / "Cargo.toml").read_text()
        pkg = package_name(manifest)
        for dep in sorted(durable_deps(manifest)):
            crate_edges.append((pkg, dep))
            if LAYERS.get(dep, 99) >= LAYERS.get(pkg, -1):
                print(f"upward crate edge: {pkg} -> {dep}")
                failed = True
    if dot:
        print("digraph crates {")
        for a, b in crate_edges:
            print(f'  "{a}" -> "{b}";')
        print("}")
    for d in CRATE_DIRS:
        src = ROOT / d / "src" if (ROOT / d / "src").is_dir() else ROOT / d
        crate = Crate(src)
        edges = crate.edges()
        if dot:
            print(f'digraph "{d}" {{')
            for a, b in sorted(edges):
                print(f'  "{name(a)}" -> "{name(b)}";')
            print("}")
        for comp in cycles(crate.mods.keys(), edges):
            failed = True
            members = sorted(comp)
            print(f"{d}: modules in a circle: {', '.join(name(m) for m in members)}")
            for a, b in sorted(edges):
                if a in comp and b in comp:
                    print(f"    {name(a)} -> {name(b)}")
    if not dot:
        print("module graph: " + ("circles or upward edges found" if failed else
                                  f"no circles in {len(CRATE_DIRS)} crates, crate edges point down"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

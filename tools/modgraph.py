#!/usr/bin/env python3
"""Module dependency picture of one crate's src/ directory.

Usage: tools/modgraph.py crates/airlock/src [-v]

A top-level module is a file `src/x.rs` or a folder `src/x/`. An edge x -> y is any
`crate::y` path in x's files (use declarations and inline paths), outside comments, strings and
`#[cfg(test)]` items. Prints every cycle
(strongly connected component of more than one module); -v also prints the edges.
"""
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rustsrc import code_only, without_test_modules  # noqa: E402


def modules(src: Path):
    mods = {}
    for p in sorted(src.iterdir()):
        if p.suffix == ".rs" and p.stem not in ("lib", "main"):
            mods.setdefault(p.stem, []).append(p)
        elif p.is_dir():
            mods.setdefault(p.name, []).extend(sorted(p.rglob("*.rs")))
    return mods


def edges(mods):
    out = {m: set() for m in mods}
    pat = re.compile(r"crate::(\w+)")
    group = re.compile(r"use crate::\{([^;]*)\}", re.S)
    for m, files in mods.items():
        for f in files:
            text = without_test_modules(code_only(f.read_text()))
            names = set(pat.findall(text))
            for g in group.findall(text):
                names.update(re.findall(r"(?:^|[,{\s])(\w+)", g))
            out[m].update(n for n in names if n in mods and n != m)
    return out


def sccs(graph):
    index, low, stack, on, res, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
            res.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return res


def main():
    src = Path(sys.argv[1])
    graph = edges(modules(src))
    if "-v" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {' '.join(sorted(graph[m]))}")
    cycles = [c for c in sccs(graph) if len(c) > 1]
    for c in cycles:
        print(f"cycle ({len(c)}): {' '.join(c)}")
    if not cycles:
        print("no cycles")


main()

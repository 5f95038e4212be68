#!/usr/bin/env python3
"""Longest Rust functions (lines from `fn` to its closing brace) under the given paths.

Usage: TOP=15 tools/longfns.py crates/airlock/src crates/airlock-egress/src

Counts every `fn` item (free, method, nested) by brace matching that skips strings,
chars and comments; test modules count too, so read the paths in the output.
"""
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rustsrc import closing_brace, code_only  # noqa: E402

FN = re.compile(r"\bfn\s+(\w+)")


def functions(path):
    code = code_only(path.read_text())
    for m in FN.finditer(code):
        start = m.start()
        j = start
        while j < len(code) and code[j] not in "{;":
            j += 1
        if j >= len(code) or code[j] == ";":
            continue
        k = closing_brace(code, j)
        first = code.count("\n", 0, start) + 1
        last = code.count("\n", 0, k) + 1
        yield last - first + 1, m.group(1), f"{path}:{first}"


def main():
    rows = []
    for arg in sys.argv[1:]:
        p = Path(arg)
        for f in sorted([p] if p.is_file() else p.rglob("*.rs")):
            rows.extend(functions(f))
    rows.sort(reverse=True)
    for lines, name, where in rows[: int(os.environ.get("TOP", "10"))]:
        print(f"{lines:5}  {name:30} {where}")


main()

"""Shared helper of the tools: Rust source with comments and literals blanked."""
import re


def code_only(text):
    """Blank out comments, strings and char literals, keeping offsets and newlines."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def closing_brace(code, j):
    """Index of the `}` that closes the `{` at `j` (or the end of `code`)."""
    depth, k = 0, j
    while k < len(code):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                break
        k += 1
    return k


def without_test_modules(code):
    """Blank out `#[cfg(test)]` items (their braces matched on comment-free code)."""
    out = list(code)
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        j = code.find("{", m.end())
        semi = code.find(";", m.end())
        if j < 0 or (0 <= semi < j):
            continue
        k = closing_brace(code, j)
        for i in range(m.start(), min(k + 1, len(code))):
            if out[i] != "\n":
                out[i] = " "
    return "".join(out)

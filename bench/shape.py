#!/usr/bin/env python3
"""shape.py — the shape of the code: what each reader has to read, in lines.

For a git revision (default: the working tree), prints:
  - lines and comment ratio of each source file (a comment line is one
    whose first non-blank characters are //; the ratio is comment lines
    over code lines, blank lines counting for neither);
  - the loop reader's set (server.cpp, http_parse.hpp, sse.hpp) in lines;
  - each file under apps/, and the shared engine headers (every top-level
    .hpp but http_parse.hpp and sse.hpp), in lines;
  - function lengths over all of them: count, median, longest (and the
    five longest by name). A function is a definition whose signature line
    ends with "{" and whose body closes with a "}" at the same indent; its
    length runs from the signature line to that brace, both included.
    Lambdas and one-line functions are not counted.

Usage: bench/shape.py [REV]        e.g. bench/shape.py ecc7080
"""
import re
import statistics
import subprocess
import sys

LOOP_SET = ["server.cpp", "http_parse.hpp", "sse.hpp"]


def files_at(rev):
    if rev:
        names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], capture_output=True, text=True, check=True).stdout.split()
        read = lambda n: subprocess.run(["git", "show", f"{rev}:{n}"], capture_output=True, text=True, check=True).stdout
    else:
        names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], capture_output=True, text=True,
                               check=True).stdout.split()
        read = lambda n: open(n, encoding="utf-8").read()
    keep = [n for n in names if re.fullmatch(r"[^/]+\.(cpp|hpp)|apps/[^/]+\.hpp", n)]
    return {n: read(n).split("\n") for n in sorted(keep)}


def comment_ratio(lines):
    comments = sum(1 for l in lines if l.strip().startswith("//"))
    code = sum(1 for l in lines if l.strip() and not l.strip().startswith("//"))
    return comments / code if code else 0.0


SIGNATURE = re.compile(r"^(\s*)(?!(?:if|for|while|switch|else|do|return|struct|class|enum|union|namespace|extern)\b)"
                       r"[A-Za-z_~][^;=]*\)\s*(?:const\s*)?(?:noexcept\s*)?(?:->\s*[^{]+)?\{\s*$")


def functions(name, lines):
    out, open_at = [], []
    for i, line in enumerate(lines):
        m = SIGNATURE.match(line)
        if m and "(" in line:
            open_at.append((len(m.group(1)), i, line.strip()))
            continue
        if open_at and re.match(r"^\s*\}", line):
            indent = len(line) - len(line.lstrip())
            if indent == open_at[-1][0]:
                _, start, sig = open_at.pop()
                out.append((i - start + 1, f"{name}: {sig[:70]}"))
    return out


def main():
    rev = sys.argv[1] if len(sys.argv) > 1 else None
    files = files_at(rev)
    print(f"revision: {rev or 'working tree'}")
    print(f"{'file':<22} {'lines':>6} {'comment ratio':>14}")
    for n, lines in files.items():
        count = len(lines) - (1 if lines and lines[-1] == "" else 0)
        print(f"{n:<22} {count:>6} {comment_ratio(lines):>14.2f}")
    size = lambda n: len(files[n]) - 1 if n in files else 0
    print(f"loop reader's set ({' + '.join(LOOP_SET)}): {sum(size(n) for n in LOOP_SET)} lines")
    apps = [n for n in files if n.startswith("apps/")]
    for n in apps:
        print(f"app file {n}: {size(n)} lines")
    shared = [n for n in files if n.endswith(".hpp") and "/" not in n and n not in LOOP_SET]
    print(f"shared engine headers ({' + '.join(shared)}): {sum(size(n) for n in shared)} lines")
    fns = [f for n, lines in files.items() for f in functions(n, lines)]
    lens = [n for n, _ in fns]
    print(f"functions: {len(fns)}, median {statistics.median(lens):g} lines, longest {max(lens)}")
    for n, sig in sorted(fns, reverse=True)[:5]:
        print(f"  {n:>4}  {sig}")


if __name__ == "__main__":
    main()

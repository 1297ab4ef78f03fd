#!/usr/bin/env python3
"""shape.py — the shape of the code: what each reader has to read, in lines.

For a git revision (default: the working tree), prints:
  - lines and comment ratio of each source file (a comment line is one
    whose first non-blank characters are // or --, for Lua; the ratio is
    comment lines over code lines, blank lines counting for neither);
  - server.cpp: its lines, and those before its Appendix banner (a
    comment line holding the word "Appendix"; all of it when there is none);
  - the loop reader's path: server.cpp up to the Appendix, then
    http_parse.hpp, sse.hpp, out_queue.hpp and router.hpp (those there are);
  - each app: a file in apps/, or a folder apps/<app>/, where one app in
    one mode is <app>.hpp + rules.hpp + in_sqlite.hpp (or in_redis.hpp)
    with the folder's files they include, and its Lua apart;
    and the largest file in apps/;
  - the shared engine: engine/*.hpp (before the engine/ folder: every
    top-level .hpp but the loop's), together and its largest file;
  - function lengths over the C++ files: count, median, longest (and the
    five longest by name). A function is a definition whose signature line
    ends with "{" and whose body closes with a "}" at the same indent; its
    length runs from the signature line to that brace, both included.
    Lambdas and one-line functions are not counted;
  - forwarding lambdas: a lambda whose body only calls one function with
    its own arguments (an App's hooks need none: std::bind_front names a
    member function).

Usage: bench/shape.py [REV]        e.g. bench/shape.py 20734f8
"""
import re
import statistics
import subprocess
import sys

LOOP_PATH = ["server.cpp", "http_parse.hpp", "sse.hpp", "out_queue.hpp", "router.hpp"]


def files_at(rev):
    if rev:
        names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], capture_output=True, text=True, check=True).stdout.split()
        read = lambda n: subprocess.run(["git", "show", f"{rev}:{n}"], capture_output=True, text=True, check=True).stdout
    else:
        names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], capture_output=True, text=True,
                               check=True).stdout.split()
        read = lambda n: open(n, encoding="utf-8").read()
    keep = [n for n in names if re.fullmatch(r"[^/]+\.(cpp|hpp)|(engine|apps)/[^/]+\.hpp|apps/[^/]+/[^/]+\.(hpp|lua)", n)]
    return {n: read(n).split("\n") for n in sorted(keep)}


def mode_files(files, app, mode):
    """<app>.hpp, rules.hpp and one mode's file, with every file of the
    folder those include (tables.hpp, say) but the other mode's."""
    other = "in_redis.hpp" if mode == "in_sqlite.hpp" else "in_sqlite.hpp"
    to_read, seen = [f"apps/{app}/{f}" for f in (f"{app}.hpp", "rules.hpp", mode)], []
    while to_read:
        n = to_read.pop(0)
        if n in seen or n not in files or n.endswith(other):
            continue
        seen.append(n)
        to_read += [f"apps/{app}/{m}" for m in re.findall(r'^#include "([a-z_]+\.hpp)"', "\n".join(files[n]), re.M)]
    return seen


def comment_ratio(lines):
    is_comment = lambda l: l.strip().startswith(("//", "--"))
    comments = sum(1 for l in lines if is_comment(l))
    code = sum(1 for l in lines if l.strip() and not is_comment(l))
    return comments / code if code else 0.0


SIGNATURE = re.compile(r"^(\s*)(?!(?:if|for|while|switch|else|do|return|struct|class|enum|union|namespace|extern)\b)"
                       r"[A-Za-z_~][^;=]*\)\s*(?:const\s*)?(?:noexcept\s*)?(?:->\s*[^{]+)?\{\s*$")


# A lambda whose whole body hands its arguments on to one named function:
# [this](const Request& r) { return grab(r); }
FORWARDING = re.compile(r"\[[^\]]*\]\s*\(([^)]*)\)\s*\{\s*(?:return\s+)?[\w.:>-]+\(([^()]*)\);\s*\}")


def forwards(line):
    m = FORWARDING.search(line)
    if not m:
        return False
    params = [p.split()[-1].lstrip("&*") for p in m.group(1).split(",") if p.strip() and len(p.split()) > 1]
    args = [a.strip() for a in m.group(2).split(",") if a.strip()]
    return params == args and (params or "[this]" in line)


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
    print(f"{'file':<28} {'lines':>6} {'comment ratio':>14}")
    size = lambda n: len(files[n]) - (1 if files[n] and files[n][-1] == "" else 0) if n in files else 0
    for n, lines in files.items():
        print(f"{n:<28} {size(n):>6} {comment_ratio(lines):>14.2f}")
    server = files.get("server.cpp", [])
    banner = next((i for i, l in enumerate(server) if l.strip().startswith("//") and "Appendix" in l), size("server.cpp"))
    print(f"server.cpp: {size('server.cpp')} lines, {banner} before the Appendix banner, comment ratio {comment_ratio(server):.2f}")
    path = [n for n in LOOP_PATH if n in files]
    print(f"loop reader's path ({' + '.join(path)}, server.cpp up to the Appendix): "
          f"{banner + sum(size(n) for n in path if n != 'server.cpp')} lines")
    for n in files:
        if re.fullmatch(r"apps/[^/]+\.hpp", n):
            print(f"app {n}: {size(n)} lines")
    for app in sorted({n.split("/")[1] for n in files if n.count("/") == 2 and n.startswith("apps/")}):
        one_mode = mode_files(files, app, "in_sqlite.hpp")
        lua = [n for n in files if n.startswith(f"apps/{app}/") and n.endswith(".lua")]
        in_redis = mode_files(files, app, "in_redis.hpp")
        print(f"app apps/{app}/ in the SQLite mode ({' + '.join(f.split('/')[-1] for f in one_mode)}): "
              f"{sum(size(n) for n in one_mode)} lines; in the Redis mode (with in_redis.hpp instead): "
              f"{sum(size(n) for n in in_redis)} lines, and its Lua: {sum(size(n) for n in lua)} lines")
    app_files = [n for n in files if n.startswith("apps/")]
    biggest = max(app_files, key=size)
    print(f"largest file in apps/: {biggest}, {size(biggest)} lines")
    engine = [n for n in files if n.startswith("engine/")] or [n for n in files if n.endswith(".hpp") and "/" not in n and n not in LOOP_PATH]
    print(f"shared engine ({' + '.join(engine)}): {sum(size(n) for n in engine)} lines, largest {max(size(n) for n in engine)}")
    fns = [f for n, lines in files.items() if not n.endswith(".lua") for f in functions(n, lines)]
    lens = [n for n, _ in fns]
    print(f"functions: {len(fns)}, median {statistics.median(lens):g} lines, longest {max(lens)}")
    for n, sig in sorted(fns, reverse=True)[:5]:
        print(f"  {n:>4}  {sig}")
    forwarding = [f"{n}:{i + 1}" for n, lines in files.items() for i, l in enumerate(lines) if forwards(l)]
    print(f"forwarding lambdas: {len(forwarding)}" + (f" ({', '.join(forwarding[:5])})" if forwarding else ""))


if __name__ == "__main__":
    main()

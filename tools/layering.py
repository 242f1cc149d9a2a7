#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Which of core's files depend on which, and whether any of them depend on
each other in a circle.

Two kinds of edge:
  include  A -> B   A has `#include "B"` and B is one of core's headers
                    (core/*.h or include/stashfs/*.h);
  call     A -> B   A's object file uses a symbol (a function, or data)
                    that B's object file defines, from `nm` of the objects
                    the build made of core (build/core/libstashcore.a.p).
A cycle is a set of files that reach each other through edges of one kind.
Prints both edge lists and the cycles, each with one path around it and the
edges inside it with the symbols they use (those are what to cut); exits 1
when there is a cycle, 0 when there is none, 2 when it cannot look (objects
not built, nm missing).

  tools/layering.py                 the tree this script is in, its build/
  tools/layering.py --build DIR     objects of another build directory
  tools/layering.py --dot           a Graphviz digraph instead (same exit status)
  tools/layering.py --core DIR --include DIR --objects DIR
                                    any tree (the test of this script uses it)
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sources(core, include):
    """{label: path} of core's .c and .h files and the public headers."""
    files = {}
    for d, prefix in ((core, "core/"), (include, "include/")):
        if not d or not os.path.isdir(d):
            continue
        for dirpath, _, names in os.walk(d):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    path = os.path.join(dirpath, n)
                    files[prefix + os.path.relpath(path, d)] = path
    return files


def include_edges(files):
    """{(A, B): []}: A includes B, both files of core."""
    by_include = {}
    for label in files:
        if label.startswith("core/"):
            by_include[label[len("core/"):]] = label
        else:
            by_include[label[len("include/"):]] = label
    edges = {}
    for label, path in files.items():
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if m and m.group(1) in by_include and by_include[m.group(1)] != label:
                    edges[(label, by_include[m.group(1)])] = []
    return edges


def nm_symbols(obj):
    """(defined globals, undefined) symbol sets of one object file."""
    r = subprocess.run(["nm", "-P", obj], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("nm %s: %s" % (obj, r.stderr.strip()))
    defined, undefined = set(), set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRCGSVW":
            defined.add(name)
    return defined, undefined


def call_edges(objdir, files):
    """{(A, B): [symbols]}: A's object uses what B's defines."""
    objs = sorted(n for n in os.listdir(objdir) if n.endswith(".o"))
    if not objs:
        raise RuntimeError("no object files in %s: build first (ninja -C build)" % objdir)
    owner, uses = {}, {}
    for n in objs:
        # meson names them after the source: "store.c.o", "sub_dir_x.c.o".
        src = n[:-2]
        label = "core/" + src
        for cand in files:
            if cand.startswith("core/") and cand.replace("/", "_")[len("core_"):] == src:
                label = cand
        defined, undefined = nm_symbols(os.path.join(objdir, n))
        for s in defined:
            owner[s] = label
        uses[label] = undefined
    edges = {}
    for a, undefined in uses.items():
        for s in sorted(undefined):
            b = owner.get(s)
            if b and b != a:
                edges.setdefault((a, b), []).append(s)
    return edges


def cycles(edges):
    """Strongly connected components of more than one file, each sorted."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        # Iterative Tarjan: the graphs are small, but recursion limits are not ours to choose.
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def path_around(comp, edges):
    """One closed path through the first file of @comp, inside @comp."""
    start, inside = comp[0], set(comp)
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for (a, b) in sorted(edges):
            if a != v or b not in inside:
                continue
            if b == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if b not in prev:
                prev[b] = v
                queue.append(b)
    return comp


def report(kind, edges, out):
    print("%s edges (%d):" % (kind, len(edges)), file=out)
    for (a, b), syms in sorted(edges.items()):
        print("  %s -> %s%s" % (a, b, "  (%s)" % ", ".join(syms) if syms else ""), file=out)
    found = cycles(edges)
    if not found:
        print("%s cycles: none" % kind, file=out)
    for comp in found:
        print("%s cycle among %d files: %s" % (kind, len(comp), " ".join(comp)), file=out)
        print("  for one: %s" % " -> ".join(path_around(comp, edges)), file=out)
        print("  its edges:", file=out)
        for (a, b), syms in sorted(edges.items()):
            if a in comp and b in comp:
                print("    %s -> %s%s" % (a, b, "  (%s)" % ", ".join(syms) if syms else ""),
                      file=out)
    print(file=out)
    return found


def dot(inc, calls, out):
    bad = set()
    for edges in (inc, calls):
        for comp in cycles(edges):
            bad.update((a, b) for (a, b) in edges if a in comp and b in comp)
    print("digraph core {\n  rankdir=LR;\n  node [shape=box, fontname=monospace];", file=out)
    for (a, b) in sorted(inc):
        print('  "%s" -> "%s" [style=dashed%s];' % (a, b, ", color=red" if (a, b) in bad else ""),
              file=out)
    for (a, b), syms in sorted(calls.items()):
        print('  "%s" -> "%s" [label="%d"%s];' % (a, b, len(syms),
                                                   ", color=red" if (a, b) in bad else ""),
              file=out)
    print("}", file=out)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)     # `| head` is no error
    ap = argparse.ArgumentParser(description="core's include and call edges, and their cycles")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build directory (default: build/ beside tools/)")
    ap.add_argument("--core", default=os.path.join(ROOT, "core"))
    ap.add_argument("--include", default=os.path.join(ROOT, "include"))
    ap.add_argument("--objects", help="directory of core's object files "
                    "(default: BUILD/core/libstashcore.a.p)")
    ap.add_argument("--dot", action="store_true", help="print a Graphviz digraph")
    args = ap.parse_args()
    objdir = args.objects or os.path.join(args.build, "core", "libstashcore.a.p")
    if not shutil.which("nm"):
        print("layering: nm not found (binutils)", file=sys.stderr)
        return 2
    if not os.path.isdir(objdir):
        print("layering: %s not there: build first (meson setup build && ninja -C build)"
              % objdir, file=sys.stderr)
        return 2
    files = sources(args.core, args.include)
    try:
        inc = include_edges(files)
        calls = call_edges(objdir, files)
    except (OSError, RuntimeError) as e:
        print("layering: %s" % e, file=sys.stderr)
        return 2
    if args.dot:
        dot(inc, calls, sys.stdout)
        return 1 if cycles(inc) or cycles(calls) else 0
    bad = report("include", inc, sys.stdout)
    bad += report("call", calls, sys.stdout)
    print("%d cycles" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The largest files and functions (brace-matched bodies) and the public/package declaration counts of a
checkout: `scripts/code-metrics.py [ROOT]` (default: this checkout). Used for the figures of refactoring notes."""
import os, re, sys, subprocess
root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
files = []
for folder, _, names in os.walk(os.path.join(root, 'Sources')):
    for n in names:
        if n.endswith('.swift'):
            p = os.path.join(folder, n)
            files.append((os.path.relpath(p, root), open(p, encoding='utf-8').read()))
sizes = sorted(((len(t.split('\n')) - 1, p) for p, t in files), reverse=True)
funcs = []
decl = re.compile(r'^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|private|fileprivate|internal|static|final|override|mutating|nonisolated|@discardableResult)\s+)*(func\s+[\w<>=!+\-*/]+|init[?!]?)\s*[(<]')
for p, t in files:
    lines = t.split('\n')
    i = 0
    while i < len(lines):
        m = decl.match(lines[i])
        if m and not lines[i].strip().startswith('//'):
            # find the opening brace of the body, then count braces
            depth = 0; started = False; j = i
            while j < len(lines):
                code = re.sub(r'"(?:\\.|[^"\\])*"', '""', lines[j].split('//')[0] if '"' not in lines[j] else lines[j])
                for ch in code:
                    if ch == '{': depth += 1; started = True
                    elif ch == '}': depth -= 1
                if started and depth <= 0: break
                if not started and j > i + 12: break
                j += 1
            if started:
                name = m.group(1).replace('func ', '')
                funcs.append((j - i + 1, f'{p}:{i+1} {name}'))
        i += 1
funcs.sort(reverse=True)
pub = sum(1 for _, t in files for l in t.split('\n') if re.match(r'^\s*(@\w+ )*public ', l) and 'public import' not in l)
pkg = sum(1 for _, t in files for l in t.split('\n') if re.match(r'^\s*(@\w+ )*package ', l) and 'package import' not in l)
print('total lines', sum(s for s, _ in sizes), 'files', len(files), 'public decls', pub, 'package decls', pkg)
print('largest files'); [print(f'  {s:5d} {p}') for s, p in sizes[:8]]
print('largest functions'); [print(f'  {s:5d} {p}') for s, p in funcs[:8]]

#!/usr/bin/env python3
"""Checks docs/architecture.md against Package.swift (via `swift package dump-package`) and the sources.

Fails when: an edge is drawn but not declared, or declared but not drawn; a target's third-party products
differ from the table; an edge does not point to a lower layer; a source file imports one of our modules
that its target does not declare. `--self-test` plants each kind of violation and expects a failure.
"""
import json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_doc(text):
    layers, edges, products = {}, set(), {}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if section == "Layers" and cells and cells[0].isdigit():
            for name in cells[1].split(","):
                layers[name.strip()] = int(cells[0])
        elif section == "Graph":
            m = re.match(r"\s*(\w+)\s*-->\s*(\w+)\s*$", line)
            if m:
                edges.add((m.group(1), m.group(2)))
        elif section == "Third-party products" and cells and cells[0] not in ("target", "---") and not cells[0].startswith("-"):
            products[cells[0]] = {p.strip() for p in (cells[1] if len(cells) > 1 else "").split(",") if p.strip()}
    return layers, edges, products


def parse_package(dump):
    edges, products, kinds, paths = set(), {}, {}, {}
    for t in dump["targets"]:
        name = t["name"]
        kinds[name] = t["type"]
        paths[name] = t.get("path") or os.path.join("Tests" if t["type"] == "test" else "Sources", name)
        products[name] = set()
        for dep in t["dependencies"]:
            kind, value = next(iter(dep.items()))
            if kind in ("byName", "target"):
                edges.add((name, value[0]))
            elif kind == "product":
                products[name].add(value[0])
    return edges, products, kinds, paths


def check(doc_text, dump, sources):
    errors = []
    layers, doc_edges, doc_products = parse_doc(doc_text)
    pkg_edges, pkg_products, kinds, paths = parse_package(dump)
    ours = {n for n, k in kinds.items() if k != "test"}
    pkg_edges = {e for e in pkg_edges if e[0] in ours}
    for a, b in sorted(doc_edges - pkg_edges):
        errors.append(f"docs/architecture.md draws {a} --> {b}, which Package.swift does not declare")
    for a, b in sorted(pkg_edges - doc_edges):
        errors.append(f"Package.swift declares {a} -> {b}, which docs/architecture.md does not draw")
    for name in sorted(ours):
        if name not in layers:
            errors.append(f"target {name} has no layer in docs/architecture.md")
        if kinds[name] != "system-target" and kinds[name] != "system" and doc_products.get(name, set()) != pkg_products.get(name, set()):
            errors.append(f"{name}: products in docs/architecture.md {sorted(doc_products.get(name, set()))} != Package.swift {sorted(pkg_products.get(name, set()))}")
    for a, b in sorted(pkg_edges):
        if a in layers and b in layers and layers[b] >= layers[a]:
            errors.append(f"{a} (layer {layers[a]}) depends on {b} (layer {layers[b]}): dependencies must point to a lower layer")
    declared = {}
    for a, b in pkg_edges:
        declared.setdefault(a, set()).add(b)
    for target, files in sources.items():
        for path, text in files:
            for m in re.finditer(r"^\s*(?:@\w+\s+)*(?:public |package |internal )?import\s+(\w+)", text, re.M):
                module = m.group(1)
                if module in ours and module != target and module not in declared.get(target, set()):
                    errors.append(f"{path} imports {module}, which target {target} does not declare")
    return errors


def read_sources(kinds, paths):
    sources = {}
    for name, kind in kinds.items():
        if kind == "test":
            continue
        base = os.path.join(ROOT, paths[name])
        files = []
        for folder, _, names in os.walk(base):
            for n in names:
                if n.endswith(".swift"):
                    p = os.path.join(folder, n)
                    files.append((os.path.relpath(p, ROOT), open(p, encoding="utf-8").read()))
        sources[name] = files
    return sources


def main():
    dump = json.loads(subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    doc = open(os.path.join(ROOT, "docs/architecture.md"), encoding="utf-8").read()
    _, _, kinds, paths = parse_package(dump)
    sources = read_sources(kinds, paths)
    if "--self-test" in sys.argv:
        planted = {
            "an undeclared edge drawn": (doc.replace("graph TD\n", "graph TD\n  Sync --> Gateway\n"), dump, sources),
            "a declared edge not drawn": (doc.replace("  Sync --> Ledger\n", ""), dump, sources),
            "a sideways edge": (doc.replace("| 4 | Gateway, Webhooks, Sync,", "| 4 | Gateway, Webhooks,").replace("| 5 | PortalServer,", "| 5 | Sync, PortalServer,"), dump, sources),
            "a product missing": (doc.replace("| Sync | Crypto, Logging, ServiceLifecycle |", "| Sync | Crypto, Logging |"), dump, sources),
            "an undeclared import": (doc, dump, {**sources, "Sync": sources["Sync"] + [("Sources/Sync/Planted.swift", "import Gateway\n")]}),
        }
        for label, args in planted.items():
            if not check(*args):
                print(f"self-test: {label} was not caught")
                return 1
        print(f"self-test: all {len(planted)} planted violations caught")
    errors = check(doc, dump, sources)
    for e in errors:
        print("architecture:", e)
    if errors:
        return 1
    print(f"architecture: docs/architecture.md matches Package.swift and the imports of {sum(len(f) for f in sources.values())} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main())

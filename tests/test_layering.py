"""The house plan, enforced over the source: which package may import which (README, Layout).

Every import in ``loadgen/`` and ``_wbxml/`` is read with :mod:`ast` -- at module level and inside
functions alike -- and checked against one table; the graph between packages must have no cycle.
There is no exception list: a new import either fits the table or the table changes in review.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages of this project it may import (besides itself).  The data's way:
# cli -> scenario -> run -> device -> eas -> _wbxml, with wire and results below all that use them
# and the embedded Exchange beside the client.
ALLOWED = {
    "cli": {"scenario", "run", "device", "eas", "wire", "results", "exchange", "_wbxml", "top"},
    # the scenario file describes the embedded Exchange too (its ABQ rules, its policy): validated by exchange's own
    # grammar, which never imports the scenario
    "scenario": {"eas", "device", "exchange", "results", "top"},
    "run": {"scenario", "device", "eas", "wire", "results", "top"},
    "device": {"eas", "wire", "results", "_wbxml"},
    "eas": {"_wbxml"},
    "exchange": {"eas", "wire", "_wbxml"},
    "wire": set(),
    "results": {"top"},
    "_wbxml": set(),
    "top": set(),
}
# the protocol and the codec are sans-I/O
NO_IO = {"eas", "_wbxml"}
IO_MODULES = {"asyncio", "aiohttp", "multiprocessing", "socket", "ssl", "uvloop", "httptools"}


def package_of(path):
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "_wbxml":
        return "_wbxml"
    if len(rel.parts) == 2:  # loadgen/<module>.py
        return {"scenario": "scenario", "__main__": "cli"}.get(rel.stem, "top")
    return rel.parts[1]


def target_of(name):
    """The project package an absolute import name points at, or None for a third-party one."""
    parts = name.split(".")
    if parts[0] == "_wbxml":
        return "_wbxml"
    if parts[0] != "loadgen":
        return None
    if len(parts) == 1:
        return "top"
    if parts[1] == "scenario":
        return "scenario"
    if (ROOT / "loadgen" / parts[1]).is_dir():
        return parts[1]
    return "top"


def imports(path):
    """(line, imported module name, [names]) for every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(ROOT).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [a.name for a in node.names]
            yield node.lineno, mod, names
            for name in names:  # "from loadgen import engine" imports the module loadgen.engine
                yield node.lineno, mod + "." + name, []


def sources():
    return sorted(p for p in list((ROOT / "loadgen").rglob("*.py")) + list((ROOT / "_wbxml").rglob("*.py")))


def edges():
    found = []
    for path in sources():
        src = package_of(path)
        for line, mod, _names in imports(path):
            dst = target_of(mod)
            if dst is not None and dst != src:
                found.append((src, dst, "%s:%d imports %s" % (path.relative_to(ROOT), line, mod)))
    return found


def test_every_package_is_in_the_table():
    for path in sources():
        assert package_of(path) in ALLOWED, "%s is in no package of the house plan" % path.relative_to(ROOT)


def test_imports_follow_the_table():
    wrong = ["%s (%s may import only %s)" % (where, src, ", ".join(sorted(ALLOWED[src])) or "nothing of loadgen")
             for src, dst, where in edges() if dst not in ALLOWED[src]]
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_packages():
    graph = {}
    for src, dst, _ in edges():
        graph.setdefault(src, set()).add(dst)
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: %s" % " -> ".join(trail + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for node in list(graph):
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("package", sorted(NO_IO))
def test_protocol_and_codec_do_no_io(package):
    base = ROOT / "_wbxml" if package == "_wbxml" else ROOT / "loadgen" / package
    bad = ["%s:%d imports %s" % (p.relative_to(ROOT), line, mod)
           for p in sorted(base.rglob("*.py")) for line, mod, _ in imports(p)
           if mod.split(".")[0] in IO_MODULES]
    assert not bad, "\n".join(bad)


def test_the_table_is_acyclic_itself():
    # the table may not allow a cycle either (a future import would then pass the table and fail above)
    seen = {}

    def depth(node, stack=()):
        assert node not in stack, "the table allows a cycle: %s" % " -> ".join(stack + (node,))
        if node not in seen:
            seen[node] = 1 + max((depth(n, stack + (node,)) for n in ALLOWED[node]), default=0)
        return seen[node]

    for node in ALLOWED:
        depth(node)

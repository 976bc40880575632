"""README's Architecture section holds: imports go down, without a cycle, and the
library never imports the study, the lessons or the benchmarks."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinyvae"


def unit(module):
    """'tinyvae.kernels.unfold' -> 'kernels': a top-level module or subpackage of tinyvae."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tinyvae"


def import_graph():
    """{unit: set of units it imports} over every .py file of the package."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = module if rel.name == "__init__" else module.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                if node.module:
                    targets.add(".".join(base + [node.module]))
                else:
                    targets.update(".".join(base + [a.name]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("tinyvae", "lessons",
                                                                                           "benchmarks"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] in ("tinyvae", "lessons"))
        graph.setdefault(unit(module), set()).update(
            t if not t.startswith("tinyvae") else unit(t) for t in targets)
    for u in graph:
        graph[u].discard(u)
    return graph


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    state = {}

    def visit(u, path):
        if state.get(u) == "open":
            raise AssertionError(f"import cycle: {' -> '.join(path + [u])}")
        if state.get(u) == "done":
            return
        state[u] = "open"
        for v in sorted(graph.get(u, ())):
            if v in graph:
                visit(v, path + [u])
        state[u] = "done"

    for u in sorted(graph):
        visit(u, [])


def test_the_library_imports_no_study_lessons_or_benchmarks():
    graph = import_graph()
    for u, targets in graph.items():
        assert not {t for t in targets if t.split(".")[0] in ("lessons", "benchmarks")}, u
        if u not in ("study",):
            assert "study" not in targets, f"{u} imports tinyvae.study"


def test_the_engine_sits_at_the_bottom():
    graph = import_graph()
    assert graph["kernels"] <= {"errors"}
    assert graph["layers"] <= {"kernels", "geometry", "errors"}
    assert graph["losses"] <= {"errors"}
    assert "download" not in graph["data"] and "download" not in graph["train"]

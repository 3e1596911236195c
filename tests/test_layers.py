"""The layering the README states: workflows -> evaluators / simulator / trainer -> userlm. No module imports
from a layer above its own, and the three middle packages do not import each other (evaluators read runs
through the core's records, not through the simulator). Read from the source, so a lazy import inside a
function counts too. Also the size rule the README states: no .py file of the project over MAX_LINES lines."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"userlm": {"userlm"}, "simulator": {"userlm", "simulator"}, "trainer": {"userlm", "trainer"},
           "evaluators": {"userlm", "evaluators"},
           "workflows": {"userlm", "simulator", "trainer", "evaluators", "workflows"}}
MAX_LINES = 310


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


def test_no_module_imports_from_a_layer_above_it():
    wrong = [f"{path.relative_to(ROOT)} imports {sorted(imported_packages(path) - allowed)}"
             for package, allowed in ALLOWED.items() for path in sorted((ROOT / package).rglob("*.py"))
             if imported_packages(path) - allowed]
    assert not wrong, "\n".join(wrong)


def test_no_python_file_is_over_max_lines():
    files = [path for folder in (*ALLOWED, "benchmarks", "tests") for path in sorted((ROOT / folder).rglob("*.py"))]
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in files
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert files and not long, "\n".join(long)


def imported_modules(path: Path) -> set[str]:
    """Project modules a file imports (lazy imports included), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
        found |= {n for n in names if n.split(".")[0] in ALLOWED}
    return found


def test_no_two_modules_import_each_other():
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p
               for package in ALLOWED for p in (ROOT / package).rglob("*.py")}
    edges = {name: {m for m in imported_modules(path) if m in modules and m != name}
             for name, path in modules.items()}
    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and a in edges.get(b, ()))
    assert not cycles, "\n".join(cycles)

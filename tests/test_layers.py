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

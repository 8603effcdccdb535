"""The shared package never reaches up into a service: `kazru/` is what services build on."""

import ast
from pathlib import Path

KAZRU = Path(__file__).resolve().parents[2] / "kazru"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):  # every import, also those inside functions
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_module_under_kazru_imports_from_services():
    upward = {
        str(path.relative_to(KAZRU.parent)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "services"
        )
        for path in KAZRU.rglob("*.py")
        if "v1" not in path.relative_to(KAZRU).parts  # generated protobuf code
    }
    assert {path: names for path, names in upward.items() if names} == {}
    assert len(upward) > 20  # the walk really saw the package

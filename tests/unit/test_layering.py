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


def test_services_speak_to_the_bus_through_its_methods_not_its_raw_connection():
    """`Bus.nc` / `Bus.js` are for tests and tools; a service that needs more of NATS adds a method to Bus."""
    raw_use = {}
    for root in (KAZRU, KAZRU.parent / "services"):
        for path in root.rglob("*.py"):
            if path.name == "bus.py" or "v1" in path.relative_to(root).parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            uses = [
                node.lineno
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute)
                and node.attr in ("nc", "js")
                and isinstance(node.value, (ast.Name, ast.Attribute))
                and getattr(node.value, "id", getattr(node.value, "attr", "")).lstrip("_") == "bus"
            ]
            if uses:
                raw_use[str(path.relative_to(KAZRU.parent))] = uses
    assert raw_use == {}

"""The layers of the code: `kazru/` is what services build on and never reaches up into a service;
inside it, the domain (`kazru/domain`) does no I/O, and the development tools (`kazru/dev`) are not
part of a running service (kazru/__init__.py describes the layers)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KAZRU = REPO / "kazru"

# Infrastructure the domain must not know: the drivers, and kazru's layers that wrap them.
DOMAIN_MUST_NOT_IMPORT = (
    "kazru.adapters",
    "kazru.db",
    "kazru.grpc",
    "kazru.jobs",
    "kazru.dev",
    "sqlalchemy",
    "nats",
    "minio",
    "grpc",
)
# The speech engines' home: one module per engine, and the one place that builds the configured engine.
ENGINES = REPO / "services" / "transcriber" / "engines"
# What recognises speech (the models' runtimes), used only inside the engines. faster-whisper's VAD
# (`faster_whisper.vad`) is the diarizer's, not an engine's.
ENGINE_LIBRARIES = ("onnx_asr", "faster_whisper.WhisperModel", "faster_whisper.transcribe", "faster_whisper.tokenizer")
# Service code that really needs a development tool at run time, each entry a known debt named here
# so that it stays visible. None today.
DEV_IMPORTS_ALLOWED: dict[str, set[str]] = {}


def imports(path: Path, *, under_type_checking: bool) -> list[tuple[int, str]]:
    """(line, module) of every import in `path`, also those inside functions, `from kazru import x` as
    `kazru.x`; those under `if TYPE_CHECKING:` only with `under_type_checking` (they name types for
    annotations only, but still make one layer know another)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = set()
    for node in ast.walk(tree):
        if not under_type_checking and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            found.append((node.lineno, module))
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def within(module: str, packages) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def python_files(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*.py")) if "v1" not in path.relative_to(KAZRU.parent).parts]


def test_no_module_under_kazru_imports_from_services():
    """Not even for annotations: `if TYPE_CHECKING:` blocks count too."""
    upward = {
        str(path.relative_to(KAZRU.parent)): sorted(
            {name for _, name in imports(path, under_type_checking=True) if within(name, ("services",))}
        )
        for path in python_files(KAZRU)
    }
    assert {path: names for path, names in upward.items() if names} == {}
    assert len(upward) > 20  # the walk really saw the package


def test_the_settings_import_no_other_part_of_kazru():
    """Every layer reads the settings (the domain included), so the settings read none of them, not even
    for annotations: checking the encryption keyring's text is theirs (`parse_encryption_keys`), and the
    adapter builds its keyring on it."""
    inward = [
        f"kazru/settings.py:{line} imports {module}"
        for line, module in imports(KAZRU / "settings.py", under_type_checking=True)
        if within(module, ("kazru", "services"))
    ]
    assert not inward, "kazru.settings is the floor every layer stands on:\n" + "\n".join(inward)


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


def test_the_domain_imports_no_adapter_database_grpc_job_tool_or_driver():
    """Not even for annotations: a type a port takes is a Protocol in the domain (`RecordedAudio`)."""
    offending = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in python_files(KAZRU / "domain")
        for line, module in imports(path, under_type_checking=True)
        if within(module, DOMAIN_MUST_NOT_IMPORT)
    ]
    assert not offending, "kazru/domain is pure rules, without I/O:\n" + "\n".join(offending)
    assert len(python_files(KAZRU / "domain")) >= 7  # the walk really saw the package


def test_only_tools_and_tests_import_the_development_tools():
    offending, allowed_seen = [], set()
    for root in (KAZRU, REPO / "services"):
        for path in python_files(root):
            name = str(path.relative_to(REPO))
            if name.startswith("kazru/dev/"):
                continue
            for line, module in imports(path, under_type_checking=False):
                if not within(module, ("kazru.dev",)):
                    continue
                if within(module, DEV_IMPORTS_ALLOWED.get(name, ())):
                    allowed_seen.add(name)
                else:
                    offending.append(f"{name}:{line} imports {module}")
    assert not offending, "kazru.dev is for make run, tests, bench and scripts:\n" + "\n".join(offending)
    # An allowance nobody uses any more is taken out, so the list stays the list of real needs.
    assert allowed_seen == set(DEV_IMPORTS_ALLOWED), f"unused allowance: {set(DEV_IMPORTS_ALLOWED) - allowed_seen}"


def engine_classes(path: Path) -> list[str]:
    """Classes in `path` that are speech engines: they define `recognize` (the SpeechEngine protocol) or
    `recognize_blocking` (a local engine's half, the rest inherited from LocalEngine)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(item, ast.AsyncFunctionDef | ast.FunctionDef) and item.name in ("recognize", "recognize_blocking")
            for item in node.body
        )
        and node.name != "SpeechEngine"  # the protocol itself (kazru/domain/recognition.py)
    ]


def test_speech_engines_live_in_one_place_and_are_built_in_one_place():
    code = [*python_files(KAZRU), *sorted((REPO / "services").rglob("*.py"))]
    engines = {path: engine_classes(path) for path in code}
    outside = {str(path.relative_to(REPO)): names for path, names in engines.items() if names and ENGINES not in path.parents}
    assert outside == {}, "speech engines belong in services/transcriber/engines"
    names = {name for found in engines.values() for name in found}
    assert {"WhisperEngine", "SpeechKitEngine", "GigaamEngine"} <= names  # the walk really saw them

    libraries = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in code
        if ENGINES not in path.parents
        for line, module in imports(path, under_type_checking=False)
        if within(module, ENGINE_LIBRARIES)
    ]
    assert not libraries, "speech recognition libraries are for the engines only:\n" + "\n".join(libraries)

    builders = [
        f"{path.relative_to(REPO)}:{node.lineno} builds {node.func.id}"
        for path in code
        if path != ENGINES / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
    ]
    assert not builders, "create_speech_engine (services/transcriber/engines) builds the engine:\n" + "\n".join(builders)

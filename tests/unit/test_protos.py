"""The generated code is what the protos say now, and the protos keep our conventions."""

import filecmp
import importlib
import subprocess
import sys
from pathlib import Path

from kazru.settings import REPO_ROOT

PROTO_DIR = REPO_ROOT / "protos" / "kazru" / "v1"
GENERATED_DIR = REPO_ROOT / "kazru" / "v1"


def test_generated_code_matches_the_protos(tmp_path: Path):
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "protogen.py"), "--out", str(tmp_path)], check=True)
    fresh = sorted(p.name for p in (tmp_path / "kazru" / "v1").glob("*.py*"))
    current = sorted(p.name for p in GENERATED_DIR.glob("*.py*"))
    assert fresh == current, "run `make proto`: generated files differ from the protos"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "kazru" / "v1", GENERATED_DIR, fresh, shallow=False)
    assert not mismatch and not errors, f"stale generated code, run `make proto`: {mismatch or errors}"


def test_every_proto_is_package_kazru_v1():
    for proto in PROTO_DIR.glob("*.proto"):
        assert "package kazru.v1;" in proto.read_text(), proto.name


def test_enums_start_with_unspecified_zero():
    for proto in PROTO_DIR.glob("*.proto"):
        module = importlib.import_module(f"kazru.v1.{proto.stem}_pb2")
        enums = list(module.DESCRIPTOR.enum_types_by_name.values())
        for message in module.DESCRIPTOR.message_types_by_name.values():
            enums += list(message.enum_types)
        for enum in enums:
            assert enum.values[0].number == 0 and enum.values[0].name.endswith("UNSPECIFIED"), enum.full_name


def test_one_service_file_per_service():
    for proto in PROTO_DIR.glob("*_service.proto"):
        module = importlib.import_module(f"kazru.v1.{proto.stem}_pb2")
        assert len(module.DESCRIPTOR.services_by_name) == 1, proto.name

"""What a GigaAM-Multilingual model folder must hold: our list of names agrees with what onnx-asr reads."""

from __future__ import annotations

import pytest
from onnx_asr.models.gigaam import GigaamMultilingualCtc

from kazru.adapters.model_files import gigaam_model_files, missing_gigaam_files
from kazru.settings import GigaamSettings, Settings


@pytest.mark.parametrize(
    ("model", "quantization", "graph"),
    [
        ("gigaam-multilingual-ctc", "int8", "multilingual_ctc.int8.onnx"),
        ("gigaam-multilingual-ctc", "", "multilingual_ctc.onnx"),
        ("gigaam-multilingual-large-ctc", "int8", "multilingual_large_ctc.int8.onnx"),
        ("gigaam-multilingual-large-ctc", "", "multilingual_large_ctc.onnx"),
    ],
)
def test_the_files_are_those_onnx_asr_looks_for(tmp_path, model, quantization, graph):
    names = gigaam_model_files(model, quantization)
    assert names == [graph, "multilingual_vocab.txt", "config.json"]
    for name in names:
        (tmp_path / name).touch()
    # onnx-asr finds each of its files by a glob in the folder: each matches exactly one of ours.
    for pattern in GigaamMultilingualCtc._get_model_files(quantization or None).values():
        assert [path.name for path in tmp_path.glob(pattern)] in ([graph], ["multilingual_vocab.txt"]), pattern


def test_missing_files_are_named_exactly(tmp_path):
    assert missing_gigaam_files(tmp_path / "absent", "gigaam-multilingual-ctc", "int8") == [
        "multilingual_ctc.int8.onnx", "multilingual_vocab.txt", "config.json",
    ]  # fmt: skip
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "multilingual_ctc.onnx").write_bytes(b"graph")  # full precision: not the int8 file asked for
    assert missing_gigaam_files(tmp_path, "gigaam-multilingual-ctc", "int8") == [
        "multilingual_ctc.int8.onnx", "multilingual_vocab.txt",
    ]  # fmt: skip
    assert missing_gigaam_files(tmp_path, "gigaam-multilingual-ctc", "") == ["multilingual_vocab.txt"]
    # A copy cut short to nothing is as good as missing.
    (tmp_path / "multilingual_vocab.txt").touch()
    assert missing_gigaam_files(tmp_path, "gigaam-multilingual-ctc", "") == ["multilingual_vocab.txt"]


def test_gigaam_settings_are_one_group_and_the_folder_defaults_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KAZRU_ENGINE", "gigaam")
    monkeypatch.setenv("KAZRU_GIGAAM_MODEL", "gigaam-multilingual-large-ctc")
    monkeypatch.setenv("KAZRU_GIGAAM_QUANTIZATION", "")
    monkeypatch.setenv("KAZRU_GIGAAM_BATCH_SIZE", "4")
    monkeypatch.setenv("KAZRU_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.engine == "gigaam" and isinstance(settings.gigaam, GigaamSettings)
    assert (settings.gigaam.model, settings.gigaam.quantization, settings.gigaam.batch_size) == (
        "gigaam-multilingual-large-ctc", "", 4,
    )  # fmt: skip
    assert settings.gigaam_model_dir == tmp_path / "models" / "gigaam-multilingual-large-ctc"
    assert Settings(gigaam=GigaamSettings(model_dir=tmp_path / "mine")).gigaam_model_dir == tmp_path / "mine"
    # Passed on to the services under the same names, and read back the same.
    environment = settings.as_environment()
    assert environment["KAZRU_GIGAAM_MODEL"] == "gigaam-multilingual-large-ctc"
    assert environment["KAZRU_GIGAAM_QUANTIZATION"] == "" and "KAZRU_GIGAAM_MODEL_DIR" not in environment
    with pytest.MonkeyPatch.context() as patch:
        for name in list(environment):
            patch.delenv(name, raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        assert Settings() == settings


def test_an_unknown_gigaam_model_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("KAZRU_GIGAAM_MODEL", "gigaam-v3-ctc")
    with pytest.raises(ValueError, match="gigaam-multilingual-ctc"):
        Settings()

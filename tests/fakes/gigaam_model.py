"""A GigaAM-Multilingual CTC model folder for tests: the real interface, planned words for output.

The real weights cannot be downloaded on these machines, so the tests load this instead, through
the real `onnx_asr.load_model("gigaam-multilingual-ctc", folder, quantization="int8")`. The folder
holds what onnx-asr 0.12 looks for (`GigaamMultilingualCtc._get_model_files`, glob
`multilingual*_ctc{.int8}.onnx`):

- `multilingual_ctc[.int8].onnx` (`multilingual_large_ctc...` for the large model): an ONNX graph
  with the interface of GigaAM's own CTC export (`GigaAMASR._to_onnx` in salute-developers/GigaAM):
  inputs `features` float32 [batch, 64, seq_len] (log-mel, 10 ms hop) and `feature_lengths` int64
  [batch]; outputs `log_probs` float32 [batch, ceil(seq_len / 4), 71] and `encoded_lengths` int64
  [batch]. The file is float32 whatever its name says: quantization only names the file.
- `multilingual_vocab.txt`: `<symbol> <id>` per line, the word separator written `▁` (onnx-asr turns
  it back into a space) and the CTC blank `<blk>` last, at id 70, as GigaAM puts it
  (`blank_id = len(vocabulary)` in gigaam/decoding.py).
- `config.json`: `{"model_type": "gigaam", "version": "v3", ...}`; version v3 makes onnx-asr use the
  GigaAM v3 log-mel front end (20 ms window, 10 ms hop, 64 bands, no centre padding).

The vocabulary. The model card (ai-sage/GigaAM-Multilingual) describes one shared character
vocabulary for Cyrillic and Latin scripts, lowercase, no punctuation or digits; its file lives on the
model hub, which these machines cannot reach. VOCABULARY below is 70 symbols in that description:
space, apostrophe, the 33 Russian letters, the 9 letters Kazakh adds (ә ғ қ ң ө ұ ү һ і) and the 26
Latin letters, plus the blank. The order is ours: nothing here depends on it (the engine reads ids
through onnx-asr, which reads this file), and the count and format match what onnx-asr expects.

How the graph knows where a piece starts. The engine cuts a recording into pieces (turns, cut at
pauses) and batches them, so the graph is given audio that starts anywhere, padded to the longest in
its batch. The planned words carry absolute times in the recording. So the graph holds two things
built from the recording given to `build_gigaam_model(audio=...)`:

1. its reference features, computed with onnx-asr's own GigaAM v3 front end and pooled to 16 bands;
2. the planned CTC log-probabilities on a 10 ms grid (each 40 ms output frame's row repeated 4 times).

For each batch item it finds the item's offset in the reference by least squares: the first
`MATCH_FRAMES` valid feature frames (masked by `feature_lengths`, so batch padding does not count)
are slid along the reference with one ONNX `Conv` whose kernel is the input itself (a batch at once,
one output channel per item): distance(o) = sum(mask * ref[o+t]^2) - 2 * sum(mask * x[t] * ref[o+t])
(+ a term that does not depend on o), and `ArgMin` picks o. Output frame k of the item is then row
o + 4k of the planned log-probs. A piece cut anywhere, even between two 10 ms hops, lands within 5 ms
of its true start, so every planned 40 ms frame is read exactly once and token times come out within
one frame of the plan. A piece that is all digital silence matches the first silent stretch: plan
words only where there is sound (speech), and plan blank elsewhere, as this module does.

Planned frames: each symbol holds one output frame's width (4 rows of 10 ms) centred on its time, so
whatever the phase of a piece's 40 ms grid exactly one output frame reads it, within half a frame of
its time (+ 5 ms of hop). A word's letters are spread from its start to one frame before its end, so
the word ends where its last letter's frame ends (as the engine reads it); `▁` sits at the end of
each word but the last, so words need 40 ms between them (spread_words leaves 80). Everything else is
blank. A symbol's frame gives it probability `confidence`; the other 70 share what is left.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from kazru.adapters.audio import SAMPLE_RATE, ffmpeg_exe

SPACE = "\u2581"
BLANK = "<blk>"
RUSSIAN = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
KAZAKH_ONLY = "әғқңөұүһі"
LATIN = "abcdefghijklmnopqrstuvwxyz"
# 70 symbols, then the blank (id 70). See the module docstring for where the list comes from.
VOCABULARY: tuple[str, ...] = (SPACE, "'", *RUSSIAN, *KAZAKH_ONLY, *LATIN, BLANK)
assert len(VOCABULARY) == 71

MODEL_FILE_STEMS = {
    "gigaam-multilingual-ctc": "multilingual_ctc",
    "gigaam-multilingual-large-ctc": "multilingual_large_ctc",
}
MEL_BANDS = 64
MATCH_BANDS = 16  # the 64 log-mel bands pooled by 4: enough to tell frames apart, 4x less to slide
MATCH_FRAMES = 128  # 1.28 s of the start of each piece is matched against the reference
HOP_SECONDS = 0.01
BLANK_PROBABILITY = 0.999
# Padding beyond the reference: far from any log-mel value (they lie within about -21..+25), so
# no piece matches there.
_FAR_AWAY = 1000.0


@dataclass(frozen=True)
class PlannedWord:
    """A word the model writes (lowercase, in VOCABULARY), with absolute times in the recording."""

    text: str
    start_seconds: float
    end_seconds: float
    confidence: float = 0.99  # probability of each of its characters on its frame


def spread_words(text: str, start_seconds: float, end_seconds: float, *, gap_seconds: float = 0.08,
                 confidence: float = 0.99) -> list[PlannedWord]:
    """Plan a sentence's words over [start, end], each as long as its letters, with `gap_seconds` between
    them: lowercase, punctuation dropped, as GigaAM writes it (a turn of a fixture's .json, say)."""
    words = [word for word in re.split(r"[^\w']+", text.lower()) if word]
    letters = sum(len(word) for word in words)
    if not words:
        return []
    per_letter = (end_seconds - start_seconds - gap_seconds * (len(words) - 1)) / letters
    if per_letter <= 0:
        raise ValueError(f"{text!r} does not fit in {start_seconds}..{end_seconds} s")
    planned, at = [], start_seconds
    for word in words:
        end = at + per_letter * len(word)
        planned.append(PlannedWord(word, round(at, 3), round(end, 3), confidence))
        at = end + gap_seconds
    return planned


def read_audio(source: str | Path | np.ndarray) -> np.ndarray:
    """16 kHz mono float32 samples of a file (decoded by ffmpeg as the transcriber does) or an array."""
    if isinstance(source, np.ndarray):
        return np.asarray(source, dtype=np.float32)
    pcm = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(source), "-map", "0:a:0", "-ac", "1",
         "-ar", str(SAMPLE_RATE), "-f", "s16le", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def model_file_name(model: str, quantization: str) -> str:
    if model not in MODEL_FILE_STEMS:
        raise ValueError(f"unknown GigaAM model {model!r}: one of {sorted(MODEL_FILE_STEMS)}")
    return MODEL_FILE_STEMS[model] + (f".{quantization}" if quantization else "") + ".onnx"


def reference_features(samples: np.ndarray) -> np.ndarray:
    """The log-mel features [64, frames] onnx-asr computes for these samples (GigaAM v3 front end)."""
    from onnx_asr.preprocessors.numpy_preprocessor import GigaamPreprocessorNumpy

    features, lengths = GigaamPreprocessorNumpy("gigaam_v3")(samples[None, :], np.array([len(samples)]))
    return features[0, :, : int(lengths[0])]


def planned_log_probs(script: Sequence[PlannedWord], row_count: int, subsampling: int) -> np.ndarray:
    """[row_count, 71] log-probabilities on the 10 ms feature grid that spell `script`: each symbol
    holds `subsampling` rows (one output frame wide) centred on its time, so whatever the phase of a
    piece's output grid, exactly one output frame reads it, within half a frame of its time."""
    ids = {symbol: i for i, symbol in enumerate(VOCABULARY)}
    chosen = np.full(row_count, ids[BLANK], dtype=np.int64)
    probability = np.full(row_count, BLANK_PROBABILITY, dtype=np.float64)
    half = subsampling // 2
    frame_rows = subsampling

    def place(centre: int, symbol: str, confidence: float) -> None:
        rows = slice(max(0, centre - half), centre - half + frame_rows)
        chosen[rows], probability[rows] = ids[symbol], confidence

    previous_stop = None
    ordered = sorted(script, key=lambda word: word.start_seconds)
    for number, word in enumerate(ordered):
        unknown = sorted({letter for letter in word.text if letter not in ids or letter in (SPACE, BLANK)})
        if unknown or not word.text:
            raise ValueError(f"{word.text!r}: the model writes lowercase letters of VOCABULARY only, not {unknown}")
        first = round(word.start_seconds / HOP_SECONDS)
        stop = round(word.end_seconds / HOP_SECONDS)  # the word ends where its last letter's frame ends
        if previous_stop is not None and first - previous_stop < frame_rows:
            raise ValueError(f"{word.text!r} at {word.start_seconds} s leaves no frame for the space before it")
        # CTC reads a symbol held over adjacent frames once: a repeated letter needs a blank frame between.
        slots = [i for i, letter in enumerate(word.text) for _ in range(1 + (i > 0 and letter == word.text[i - 1]))]
        last = stop - frame_rows
        if last - first < frame_rows * (len(slots) - 1):
            raise ValueError(
                f"{word.text!r} is too short: {word.end_seconds - word.start_seconds:.3f} s for "
                f"{len(slots)} letters and blanks of {frame_rows * HOP_SECONDS:.2f} s"
            )
        centres = [first] if len(slots) == 1 else [
            first + round(j * (last - first) / (len(slots) - 1)) for j in range(len(slots))
        ]
        # A doubled letter's slots are (blank, letter): keep the later centre of each letter.
        for i, centre in {i: centre for i, centre in zip(slots, centres, strict=True)}.items():
            place(centre, word.text[i], word.confidence)
        if number + 1 < len(ordered):
            place(stop, SPACE, word.confidence)
        previous_stop = stop
    others = np.log((1.0 - probability) / (len(VOCABULARY) - 1))
    log_probs = np.repeat(others[:, None], len(VOCABULARY), axis=1)
    log_probs[np.arange(row_count), chosen] = np.log(probability)
    return log_probs.astype(np.float32)


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _graph(reference: np.ndarray, log_probs_10ms: np.ndarray, subsampling: int) -> onnx.ModelProto:
    """See the module docstring: locate each item in the reference, read the planned rows from there."""
    bands = reference.reshape(MATCH_BANDS, MEL_BANDS // MATCH_BANDS, -1).mean(axis=1)
    padded = np.full((MATCH_BANDS, bands.shape[1] + MATCH_FRAMES), _FAR_AWAY, dtype=np.float32)
    padded[:, : bands.shape[1]] = bands
    pool = np.kron(np.eye(MATCH_BANDS), np.full(MEL_BANDS // MATCH_BANDS, MATCH_BANDS / MEL_BANDS))  # band means
    i64 = lambda *values: np.array(values, dtype=np.int64)  # noqa: E731
    nodes = [
        _constant("pool", pool.astype(np.float32)),
        _constant("reference", padded[None]),
        _constant("reference_energy", (padded**2).sum(axis=0)[None, None].astype(np.float32)),
        _constant("planned", log_probs_10ms),
        _constant("zero", i64(0)), _constant("one", i64(1)), _constant("two", np.array(2.0, np.float32)),
        _constant("sub", i64(subsampling)), _constant("sub_minus_one", i64(subsampling - 1)),
        _constant("axis0", i64(0)), _constant("axis1", i64(1)), _constant("axis2", i64(2)),
        _constant("match_frames", i64(MATCH_FRAMES)), _constant("last_row", i64(len(log_probs_10ms) - 1)),
        # The start of each item, pooled to MATCH_BANDS, its padding masked.
        helper.make_node("MatMul", ["pool", "features"], ["pooled"]),
        helper.make_node("Slice", ["pooled", "zero", "match_frames", "axis2"], ["head"]),
        helper.make_node("Shape", ["head"], ["head_len"], start=2, end=3),
        helper.make_node("Squeeze", ["head_len"], ["head_len_scalar"]),
        helper.make_node("Range", ["zero", "head_len_scalar", "one"], ["head_frames"]),
        helper.make_node("Unsqueeze", ["feature_lengths", "axis1"], ["lengths_column"]),
        helper.make_node("Less", ["head_frames", "lengths_column"], ["valid"]),
        helper.make_node("Cast", ["valid"], ["valid_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["valid_float", "axis1"], ["mask"]),  # [B, 1, K]
        helper.make_node("Mul", ["head", "mask"], ["kernel"]),  # [B, 16, K]
        # Least squares over every offset, the whole batch in two convolutions.
        helper.make_node("Conv", ["reference", "kernel"], ["cross"]),  # [1, B, offsets]
        helper.make_node("Conv", ["reference_energy", "mask"], ["energy"]),
        helper.make_node("Mul", ["cross", "two"], ["cross2"]),
        helper.make_node("Sub", ["energy", "cross2"], ["distance"]),
        helper.make_node("Squeeze", ["distance", "axis0"], ["distance_2d"]),
        helper.make_node("ArgMin", ["distance_2d"], ["offset"], axis=1, keepdims=1),  # [B, 1]
        # Output frame k reads planned row offset + subsampling * k.
        helper.make_node("Shape", ["features"], ["seq_len"], start=2, end=3),
        helper.make_node("Squeeze", ["seq_len"], ["seq_len_scalar"]),
        helper.make_node("Add", ["seq_len_scalar", "sub_minus_one"], ["seq_len_up"]),
        helper.make_node("Div", ["seq_len_up", "sub"], ["out_len"]),
        helper.make_node("Range", ["zero", "out_len", "one"], ["out_frames"]),
        helper.make_node("Mul", ["out_frames", "sub"], ["out_steps"]),
        helper.make_node("Add", ["offset", "out_steps"], ["rows"]),
        helper.make_node("Clip", ["rows", "zero", "last_row"], ["rows_clipped"]),
        helper.make_node("Gather", ["planned", "rows_clipped"], ["log_probs"], axis=0),
        helper.make_node("Sub", ["feature_lengths", "one"], ["lengths_minus_one"]),
        helper.make_node("Div", ["lengths_minus_one", "sub"], ["lengths_sub"]),
        helper.make_node("Add", ["lengths_sub", "one"], ["encoded_lengths"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gigaam_multilingual_ctc_planned",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch_size", MEL_BANDS, "seq_len"]),
            helper.make_tensor_value_info("feature_lengths", TensorProto.INT64, ["batch_size"]),
        ],
        [
            helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch_size", "seq_len", len(VOCABULARY)]),
            helper.make_tensor_value_info("encoded_lengths", TensorProto.INT64, ["batch_size"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kazru-tests")
    model.ir_version = 8  # what onnxruntime of any recent version reads
    onnx.checker.check_model(model, full_check=True)
    return model


def write_vocabulary_and_config(folder: Path, subsampling: int = 4) -> None:
    """The model folder's `multilingual_vocab.txt` and `config.json` (also used beside a random-weight
    model of the real size: scripts/export_random_gigaam.py)."""
    (folder / "multilingual_vocab.txt").write_text(
        "".join(f"{symbol} {i}\n" for i, symbol in enumerate(VOCABULARY)), encoding="utf-8"
    )
    config = {"model_type": "gigaam", "version": "v3", "features_size": MEL_BANDS, "subsampling_factor": subsampling}
    (folder / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")


def build_gigaam_model(
    folder: Path,
    script: Sequence[PlannedWord],
    *,
    audio: str | Path | np.ndarray,
    model: str = "gigaam-multilingual-ctc",
    quantization: str = "int8",
    frames_per_second: int = 25,
) -> Path:
    """Write a model folder whose CTC output spells `script` at its times in `audio` (the recording the
    test transcribes: a file, or its 16 kHz mono samples), whatever piece of it the engine gives the
    model. Returns `folder`."""
    if 100 % frames_per_second:
        raise ValueError("frames_per_second must divide 100 (the front end's hop is 10 ms)")
    subsampling = 100 // frames_per_second
    samples = read_audio(audio)
    reference = reference_features(samples)
    late = [word.text for word in script if word.end_seconds > len(samples) / SAMPLE_RATE]
    if late:
        raise ValueError(f"{late} end after the audio ({len(samples) / SAMPLE_RATE:.2f} s)")
    # Rows beyond the audio's end stay blank: a piece's batch padding reads them.
    log_probs_10ms = planned_log_probs(script, reference.shape[1] + MATCH_FRAMES + 2 * subsampling, subsampling)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_graph(reference, log_probs_10ms, subsampling), folder / model_file_name(model, quantization))
    write_vocabulary_and_config(folder, subsampling)
    return folder

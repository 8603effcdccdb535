"""Issue 26: where the time goes. Our pipeline against plain faster-whisper plus the diarizer, same run, same files.

    flock /tmp/kazru-pytest.lock .venv/bin/python -m bench.speed.run [--long] [--stack] [--json-out FILE]
    flock /tmp/kazru-pytest.lock .venv/bin/python -m bench.speed.run --engine gigaam [--long] [--memory]

Systems, each on the same decoded samples, one file after another (file-major order, so that a change in the
machine's load hits every system alike), models loaded and warmed up beforehand:

- `plain_ru` / `plain_auto`: faster-whisper's own `WhisperModel.transcribe` with the service's model files (int8,
  cpu_threads=2, beam 1, vad_filter=True, word_timestamps=True, everything else faster-whisper's defaults),
  language told `ru`, or None (detected: what a user of plain faster-whisper gets by default);
- `diarizer`: the service's Diarizer (`pipeline.create_diarizer`: Silero VAD joined with segmentation-3.0, CAM++,
  clustering), and `diarizer_plain_peer`, issue 24's plain peer (Silero alone, textbook clustering);
- `ours_kk_ru` / `ours_ru`: the transcriber's `TranscriptionPipeline.run` in this process (diarizer, Whisper engine,
  assembly), with the default languages and with `ru`;
- `--stack`: the whole stack (`bench.stack.running_stack`: gateway, ingest, S3, NATS, transcriber, PostgreSQL),
  upload -> JobFinished, one upload at a time, with each language setting.

The stage profile is taken from outside: this script wraps the services' and faster-whisper's functions and
methods at run time (nothing in services/ is changed) and adds up each stage's own time (a stage's time excludes
the stages called inside it). The CTranslate2 model behind both WhisperModels is wrapped too, so encoder passes,
greedy generation, the language head and the cross-attention alignment are timed and counted for both systems.
For our engine it also records each chunk (length, speech in it, the language head among the allowed languages,
the language chosen for its turns) and the time of each language's decode and alignment, so that the time spent
on decodes whose words were thrown away can be added up.

`--long`: the 1 h recording of bench/long_recording.py (festvox-ru in one-minute talk stretches, 9.8 % speech,
Ogg Opus), decoded to a PCM file as the worker does; our pipeline reads it from that file, plain faster-whisper
gets the whole array (as its users give it).

`--engine gigaam`: the same with our pipeline on the GigaAM engine (`ours_gigaam_kk_ru`, `ours_gigaam_ru`:
KAZRU_ENGINE=gigaam, the engine's default settings) beside the diarizer alone and `plain_gigaam`: onnx-asr's own
`load_model` on the same folder (int8, 2 intra-op threads, `with_timestamps()`), `recognize` on each Silero VAD
segment (faster-whisper's Silero with onnx-asr `with_vad`'s defaults: segments of at most 20 s; onnx-asr's own
Silero is not installed here). The model is GigaAM-Multilingual CTC at its real size with RANDOM weights
(scripts/export_random_gigaam.py, built once into bench/.cache/gigaam-random/ when absent, or `--gigaam-model`):
its words are noise, so only speed and memory mean anything. The profile times onnx-asr's stages for both (input
checks, log-mel features, the ONNX graph: encoder + CTC head, the greedy CTC decode) and our engine's piece
planning, words from tokens, language from the text and punctuation. `--memory`: each system again, alone in a
fresh process, for its peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kazru.adapters import audio  # noqa: E402
from kazru.settings import GigaamSettings, Settings  # noqa: E402

PLAIN_THREADS = 2
SYSTEMS = ("plain_ru", "plain_auto", "diarizer", "diarizer_plain_peer", "ours_kk_ru", "ours_ru")
SYSTEMS_GIGAAM = ("plain_gigaam", "diarizer", "diarizer_plain_peer", "ours_gigaam_kk_ru", "ours_gigaam_ru")
GIGAAM_MODEL = "gigaam-multilingual-ctc"
# Random weights at the real size (scripts/export_random_gigaam.py); bench/.cache is not in git.
GIGAAM_FOLDER = Path(__file__).resolve().parents[1] / ".cache" / "gigaam-random" / GIGAAM_MODEL
SHORT_CLIPS = 12
POLL_SECONDS = 0.1


# ---------------------------------------------------------------- the profile


class Profile:
    """Own (exclusive) seconds and calls per stage name; one stack of open stages per thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._local = threading.local()
        self.enabled = True

    def _stack(self) -> list:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    @contextlib.contextmanager
    def stage(self, name: str):
        if not self.enabled:
            yield
            return
        stack = self._stack()
        stack.append([name, 0.0])
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            _, inner = stack.pop()
            self.seconds[name] += elapsed - inner
            self.calls[name] += 1
            if stack:
                stack[-1][1] += elapsed

    def take(self) -> dict:
        taken = {
            name: {"seconds": round(seconds, 4), "calls": self.calls[name]}
            for name, seconds in sorted(self.seconds.items(), key=lambda item: -item[1])
        }
        self.seconds.clear()
        self.calls.clear()
        return taken


PROFILE = Profile()
# Where in our engine we are (set by the wrappers): "first" pass of a chunk, "lost_retry" (a decode lost regions
# and they are recognised again inside the chunk's language loop), "mixed_redo" (after the language choice, a run of
# same-language turns of a mixed chunk recognised again on its own).
CONTEXT = threading.local()


def timed(function, name):
    """`function` timed as stage `name` (a string, or a callable of the call's arguments)."""

    def wrapper(*args, **kwargs):
        with PROFILE.stage(name(*args, **kwargs) if callable(name) else name):
            return function(*args, **kwargs)

    wrapper.__wrapped__ = function
    return wrapper


def patch(owner, attribute: str, name) -> None:
    setattr(owner, attribute, timed(getattr(owner, attribute), name))


class Proxy:
    """Forwards everything to `target`; the methods named in `stages` are timed (and `__call__`, if given)."""

    def __init__(self, target, stages: dict, call_stage=None) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_stages", stages)
        object.__setattr__(self, "_call_stage", call_stage)

    def __getattr__(self, attribute):
        value = getattr(self._target, attribute)
        if attribute in self._stages:
            return timed(value, self._stages[attribute])
        return value

    def __call__(self, *args, **kwargs):
        with PROFILE.stage(self._call_stage):
            return self._target(*args, **kwargs)


def ctranslate2_stages(prefix: str) -> dict:
    """The CTranslate2 Whisper model's calls; generate and align named by where our engine is (pass, language)."""

    def where(kind):
        return lambda *args, **kwargs: f"{prefix}{kind}" + getattr(CONTEXT, "suffix", "")

    return {
        "encode": f"{prefix}encoder",
        "generate": where("generate"),
        "align": where("align"),
        "detect_language": f"{prefix}language_head",
    }


def instrument_plain(model) -> None:
    """faster-whisper's own transcription: VAD, features, encoder, head, generation, alignment, its Python."""
    import faster_whisper.transcribe as fw

    if not hasattr(fw.get_speech_timestamps, "__wrapped__"):
        fw.get_speech_timestamps = timed(fw.get_speech_timestamps, "fw.vad_silero")
        fw.collect_chunks = timed(fw.collect_chunks, "fw.collect_chunks")
        fw.restore_speech_timestamps = timed(fw.restore_speech_timestamps, "fw.restore_timestamps")
    model.model = Proxy(model.model, ctranslate2_stages("ct2."))
    model.feature_extractor = Proxy(model.feature_extractor, {}, call_stage="fw.features")
    patch(model, "transcribe", "fw.transcribe_setup")
    patch(model, "detect_language", "fw.detect_language")
    patch(model, "generate_with_fallback", "fw.generate_with_fallback")
    patch(model, "add_word_timestamps", "fw.word_timestamps")
    patch(model, "find_alignment", "fw.find_alignment")


class EngineLedger:
    """What our engine did with each chunk of one job (first pass), for the chunk table and the wasted decodes."""

    def __init__(self) -> None:
        self.chunks: list[dict] = []
        self.chosen: list[str] | None = None
        self.languages: list[str] = []
        self.regions = []


LEDGER = EngineLedger()


def instrument_pipeline(pipeline) -> None:
    """What every engine's pipeline shares: the diarizer's stages, audio reads, assembly, notices."""
    import services.transcriber.diarization as diarization
    import services.transcriber.pipeline as pipeline_module
    import services.transcriber.speaker_embedding as speaker_embedding
    from kazru.adapters.audio import Recording

    # Diarizer (module functions are looked up in the module at call time; methods on the instances).
    if not hasattr(diarization.get_speech_timestamps, "__wrapped__"):
        diarization.get_speech_timestamps = timed(diarization.get_speech_timestamps, "diar.vad_silero")
        diarization.detect_speech = timed(diarization.detect_speech, "diar.vad_other")
        diarization.turns_from_windows = timed(diarization.turns_from_windows, "diar.turns_from_windows")
        diarization.measure_channel = timed(diarization.measure_channel, "diar.channel")
        speaker_embedding.kaldi_fbank = timed(speaker_embedding.kaldi_fbank, "diar.campp_fbank")
        Recording.read = timed(Recording.read, "audio.read")
        pipeline_module.assemble = timed(pipeline_module.assemble, "assembly")
        pipeline_module.job_notices = timed(pipeline_module.job_notices, "notices")
    instrument_diarizer(pipeline._diarizer)


def instrument_ours(pipeline) -> None:
    """Our pipeline (Whisper engine): diarizer stages, the engine's chunking, decodes per language and pass,
    alignment, choice."""
    import services.transcriber.engines.whisper as whisper
    import services.transcriber.language_choice as language_choice

    instrument_pipeline(pipeline)
    engine = pipeline.engine
    model = engine._model
    model.model = Proxy(model.model, ctranslate2_stages("ct2."))
    patch(model, "encode", "engine.encode_python")
    whisper.plan_chunks = timed(whisper.plan_chunks, "engine.plan_chunks")
    whisper._words_by_region = timed(whisper._words_by_region, "engine.words_by_region")
    whisper._without_loop = timed(whisper._without_loop, "engine.loop_check")
    whisper._reading = timed(whisper._reading, "engine.readings")
    language_choice.text_language_probability = timed(
        language_choice.text_language_probability, "engine.choice_text_language_id"
    )

    original_choose = whisper.choose_languages

    def choose_languages(turns, languages):
        with PROFILE.stage("engine.language_choice"):
            chosen = original_choose(turns, languages)
        LEDGER.chosen = list(chosen)
        return chosen

    whisper.choose_languages = choose_languages

    original_recognize_blocking = engine.recognize_blocking

    def recognize_blocking(audio_, languages, regions, on_progress):
        LEDGER.chunks, LEDGER.chosen, LEDGER.languages, LEDGER.regions = [], None, list(languages), list(regions)
        with PROFILE.stage("engine.other"):
            return original_recognize_blocking(audio_, languages, regions, on_progress)

    engine.recognize_blocking = recognize_blocking

    original_chunk = engine._recognize_chunk

    def recognize_chunk(recording, chunk, regions, languages, stages, words_by_region, evidence=None, heard=None,
                        **options):  # fmt: skip
        outer = getattr(CONTEXT, "pass_", None)
        # The first reading of a chunk; the engine's later reading of its other languages (`allowed` given)
        # is counted under the chunk's first record as its own pass.
        first = evidence is not None and not options.get("allowed")
        record = None
        if evidence is not None and options.get("allowed"):
            CONTEXT.pass_ = "other_languages"
            CONTEXT.record = next((r for r in LEDGER.chunks if r["start"] == round(chunk.start, 2)), None)
        elif first:
            record = {
                "start": round(chunk.start, 2),
                "seconds": round(chunk.end - chunk.start, 2),
                "regions": list(chunk.regions),
                "speech_seconds": round(sum(
                    max(min(chunk.end, regions[i].end) - max(chunk.start, regions[i].start), 0.0)
                    for i in chunk.regions), 2),
                "work": defaultdict(float),  # "language:what:pass" -> seconds
                "tokens": Counter(),  # "language:pass" -> tokens kept
                "looped": Counter(),
            }  # fmt: skip
            LEDGER.chunks.append(record)
            CONTEXT.pass_, CONTEXT.record = "first", record
        elif outer is None:
            CONTEXT.pass_, CONTEXT.record = "mixed_redo", None
        else:
            CONTEXT.pass_ = "lost_retry"
        try:
            with PROFILE.stage("engine.chunk_other"):
                return original_chunk(
                    recording, chunk, regions, languages, stages, words_by_region, evidence, heard, **options
                )
        finally:
            CONTEXT.pass_ = outer
            if outer is None:
                CONTEXT.record = None

    engine._recognize_chunk = recognize_chunk

    def per_language(method, what):
        def wrapper(*args, **kwargs):
            language = args[1]
            pass_ = getattr(CONTEXT, "pass_", None) or "outside"
            CONTEXT.suffix = f"[{pass_}:{language}]"
            started = time.perf_counter()
            result = None
            try:
                with PROFILE.stage(f"engine.{what}_python[{pass_}:{language}]"):
                    result = method(*args, **kwargs)
                return result
            finally:
                CONTEXT.suffix = ""
                record = getattr(CONTEXT, "record", None)
                if record is not None:
                    record["work"][f"{language}:{what}:{pass_}"] += time.perf_counter() - started
                    if what == "decode" and result is not None:
                        record["tokens"][f"{language}:{pass_}"] += len(result[0])
                        record["looped"][f"{language}:{pass_}"] += int(result[1])

        return wrapper

    engine._decode = per_language(engine._decode, "decode")
    engine._aligned_words = per_language(engine._aligned_words, "align")

    original_features = model.feature_extractor

    def features(*args, **kwargs):
        with PROFILE.stage("engine.features"):
            result = original_features(*args, **kwargs)
        record = getattr(CONTEXT, "record", None)
        if record is not None and getattr(CONTEXT, "pass_", None) == "first" and "frames" not in record:
            record["frames"] = min(result.shape[-1], 3000)
        return result

    model.feature_extractor = _CallingProxy(original_features, features)

    original_head = engine._language_head

    def language_head(encoder_output):
        probabilities = original_head(encoder_output)
        record = getattr(CONTEXT, "record", None)
        if record is not None and len(LEDGER.languages) > 1:
            allowed = {language: probabilities.get(language, 0.0) for language in LEDGER.languages}
            total = sum(allowed.values()) or 1.0
            record["head"] = {language: round(p / total, 4) for language, p in allowed.items()}
            record["head_top"] = max(probabilities, key=probabilities.get)
        return probabilities

    engine._language_head = language_head


class _CallingProxy(Proxy):
    def __init__(self, target, call) -> None:
        super().__init__(target, {})
        object.__setattr__(self, "_call", call)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)


def instrument_diarizer(diarizer) -> None:
    encoder = diarizer._encoder
    if hasattr(encoder.embed_windows, "__wrapped__"):
        return
    patch(diarizer, "diarize", "diar.other")
    patch(diarizer, "cluster", "diar.clustering")
    patch(encoder, "embed_windows", "diar.campp_other")
    patch(encoder, "raw_embeddings", "diar.campp_onnx")
    if diarizer._segmentation is not None:
        patch(diarizer._segmentation, "speech_mask", "diar.segmentation")


def instrument_onnx_asr(adapter) -> None:
    """onnx-asr's GigaAM CTC model behind `adapter` (ours and the plain one alike): input checks and resampling,
    log-mel features, the ONNX encoder + CTC head (one graph), the greedy CTC decode, tokens to text."""
    import onnx_asr.adapters as onnx_asr_adapters

    if not hasattr(onnx_asr_adapters.read_wav_files, "__wrapped__"):
        onnx_asr_adapters.read_wav_files = timed(onnx_asr_adapters.read_wav_files, "gigaam.input")
    adapter.resampler = Proxy(adapter.resampler, {}, call_stage="gigaam.input")
    asr = adapter.asr
    asr._preprocessor = Proxy(asr._preprocessor, {}, call_stage="gigaam.features")
    patch(asr, "_encode", "gigaam.encoder")
    original_decoding = asr._decoding

    def decoding(*args, **kwargs):
        # A generator, consumed lazily by recognize's map: run it through here so its time is its own.
        with PROFILE.stage("gigaam.ctc_decode"):
            return iter(list(original_decoding(*args, **kwargs)))

    asr._decoding = decoding
    patch(asr, "_decode_tokens", "gigaam.tokens_to_text")


GIGAAM_LEDGER: dict = {}


def instrument_gigaam(pipeline) -> None:
    """Our pipeline with the GigaAM engine: the shared stages, piece planning (cut points), the model, words from
    tokens, language from the text, punctuation."""
    import services.transcriber.engines.gigaam as gigaam

    instrument_pipeline(pipeline)
    engine = pipeline.engine
    instrument_onnx_asr(engine._model)
    original_plan = gigaam.plan_pieces

    def plan_pieces(recording, regions, max_piece_seconds):
        with PROFILE.stage("engine.plan_pieces"):
            pieces = original_plan(recording, regions, max_piece_seconds)
        lengths = [piece.end - piece.start for piece in pieces]
        GIGAAM_LEDGER.update(turns=len(regions), speech_seconds_in_turns=sum(r.end - r.start for r in regions),
                             pieces=len(pieces), piece_seconds=lengths)  # fmt: skip
        return pieces

    gigaam.plan_pieces = plan_pieces
    gigaam.piece_words = timed(gigaam.piece_words, "engine.piece_words")
    gigaam.choose_segment_languages = timed(gigaam.choose_segment_languages, "engine.text_language")
    gigaam.punctuate = timed(gigaam.punctuate, "engine.punctuation")
    engine.recognize_blocking = timed(engine.recognize_blocking, "engine.other")


def gigaam_summary() -> dict:
    """Pieces of our GigaAM engine's last job."""
    lengths = GIGAAM_LEDGER.get("piece_seconds", [])
    return {
        "turns": GIGAAM_LEDGER.get("turns", 0),
        "speech_seconds_in_turns": round(GIGAAM_LEDGER.get("speech_seconds_in_turns", 0.0), 2),
        "pieces": len(lengths),
        "piece_seconds_total": round(sum(lengths), 2),
        "piece_seconds_max": round(max(lengths), 2) if lengths else 0.0,
    }


def ledger_summary() -> dict:
    """Chunks of our engine's last job: lengths, fill of the 30 s window, head, choice, work per language."""
    chunks, chosen, languages = LEDGER.chunks, LEDGER.chosen, LEDGER.languages
    table, wasted, used = [], 0.0, 0.0
    for record in chunks:
        chosen_here = sorted({chosen[i] for i in record["regions"]}) if chosen else languages
        work = dict(record["work"])
        for key, seconds in work.items():
            language = key.split(":")[0]
            if language in chosen_here:
                used += seconds
            else:
                wasted += seconds
        table.append({
            "start": record["start"], "seconds": record["seconds"], "speech_seconds": record["speech_seconds"],
            "frames": record.get("frames"), "turns": len(record["regions"]), "head": record.get("head"),
            "head_top": record.get("head_top"), "chosen": chosen_here,
            "work": {key: round(value, 3) for key, value in sorted(work.items())},
            "tokens": dict(record["tokens"]), "looped": {k: v for k, v in record["looped"].items() if v},
        })  # fmt: skip
    seconds = [record["seconds"] for record in chunks]
    return {
        "chunks": len(chunks),
        "chunk_seconds_total": round(sum(seconds), 2),
        "chunk_seconds_mean": round(statistics.mean(seconds), 2) if seconds else 0.0,
        "window_fill": round(sum(seconds) / (30.0 * len(seconds)), 3) if seconds else 0.0,
        "turns": len(LEDGER.regions),
        "speech_seconds_in_turns": round(sum(r.end - r.start for r in LEDGER.regions), 2),
        "decode_and_align_seconds_kept_language": round(used, 3),
        "decode_and_align_seconds_thrown_away": round(wasted, 3),
        "table": table,
    }


# ---------------------------------------------------------------- the systems


def run_plain(model, samples: np.ndarray, language: str | None) -> dict:
    segments, info = model.transcribe(samples, language=language, beam_size=1, vad_filter=True, word_timestamps=True)
    with PROFILE.stage("fw.generate_segments"):
        segments = list(segments)
    return {
        "language": info.language,
        "words": sum(len(segment.words or []) for segment in segments),
        "text": " ".join(segment.text.strip() for segment in segments),
        "speech_after_vad_seconds": round(info.duration_after_vad, 2),
    }


def run_diarizer(diarizer, recording) -> dict:
    result = diarizer.diarize(recording)
    return {"speakers": len(result.speakers), "turns": len(result.turns)}


def run_ours(pipeline, recording, languages, engine_summary=ledger_summary) -> dict:
    result = asyncio.run(pipeline.run(recording, languages))
    segment_languages = Counter(segment.language for segment in result.segments)
    return {
        "speakers": len(result.speakers),
        "segments": len(result.segments),
        "segment_languages": dict(segment_languages),
        "words": sum(len(segment.words) for segment in result.segments),
        "text": " ".join(segment.text for segment in result.segments),
        "service_stage_seconds": {name: round(value, 3) for name, value in result.stage_seconds.items()},
        "engine_chunks": engine_summary(),
    }


def run_plain_gigaam(model, samples: np.ndarray) -> dict:
    """What a user of plain onnx-asr does: Silero VAD segments of at most 20 s, each recognised with timestamps."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # onnx-asr's own `with_vad` defaults (its Silero model is not installed here: faster-whisper's Silero instead).
    options = VadOptions(max_speech_duration_s=20, min_silence_duration_ms=100, speech_pad_ms=30)
    with PROFILE.stage("plain.vad_silero"):
        stamps = get_speech_timestamps(samples, options, sampling_rate=audio.SAMPLE_RATE)
    results = [model.recognize(samples[stamp["start"] : stamp["end"]]) for stamp in stamps]
    return {
        "segments": len(stamps),
        "speech_after_vad_seconds": round(sum(s["end"] - s["start"] for s in stamps) / audio.SAMPLE_RATE, 2),
        "words": sum(len(result.text.split()) for result in results),
        "characters": sum(len(result.text) for result in results),
    }


def load_gigaam_plain(folder: Path):
    """onnx-asr's own loader on the same model folder, int8, PLAIN_THREADS threads, with timestamps."""
    import onnx_asr
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = PLAIN_THREADS
    options.inter_op_num_threads = 1
    model = onnx_asr.load_model(GIGAAM_MODEL, folder, quantization="int8", sess_options=options)
    return model.with_timestamps()


def gigaam_model_folder(folder: Path) -> Path:
    """The random-weight GigaAM-Multilingual CTC folder at the real size; built once (scripts/export_random_gigaam.py,
    a throwaway torch environment, minutes) when absent."""
    from kazru.adapters.model_files import missing_gigaam_files

    if missing_gigaam_files(folder, GIGAAM_MODEL, "int8"):
        print(f"[speed] building the random-weight GigaAM model in {folder} (once)", file=sys.stderr, flush=True)
        script = Path(__file__).resolve().parents[2] / "scripts" / "export_random_gigaam.py"
        subprocess.run([sys.executable, str(script), str(folder), "--model", GIGAAM_MODEL], check=True)
    return folder


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec (ru_maxrss does not: a child
    started by a large parent reports at least the parent's peak)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


class Bench:
    """Loads only what `systems` need (so that a process running one system has that system's peak memory)."""

    def __init__(self, systems: list[str], profile: bool, engine: str = "whisper", gigaam_folder=None) -> None:
        from bench.diarization.peers import PlainPeer
        from services.transcriber.pipeline import create_diarizer, create_pipeline

        PROFILE.enabled = profile
        if engine == "gigaam":
            settings = Settings(engine="gigaam", gigaam=GigaamSettings(model=GIGAAM_MODEL, model_dir=gigaam_folder))
            self.engine_threads = settings.gigaam.cpu_threads
        else:
            settings = Settings()
            self.engine_threads = settings.whisper.cpu_threads
        self.engine = engine
        self.default_languages = list(settings.default_languages)
        self.systems = systems
        self.pipeline = self.plain = self.peer = self.diarizer = None
        started = time.perf_counter()
        if any(system.startswith("ours_") for system in systems):
            self.pipeline = create_pipeline(settings)
            self.diarizer = self.pipeline._diarizer
            (instrument_gigaam if engine == "gigaam" else instrument_ours)(self.pipeline)
        elif "diarizer" in systems:
            self.diarizer = create_diarizer(settings)
            instrument_pipeline(types.SimpleNamespace(_diarizer=self.diarizer))
        if {"plain_ru", "plain_auto"} & set(systems):
            from faster_whisper import WhisperModel

            self.plain = WhisperModel(
                settings.whisper_model_path, device="cpu", compute_type="int8", cpu_threads=PLAIN_THREADS
            )
            instrument_plain(self.plain)
        if "plain_gigaam" in systems:
            self.plain = load_gigaam_plain(gigaam_folder)
            instrument_onnx_asr(self.plain)
        if "diarizer_plain_peer" in systems:
            self.peer = PlainPeer.load(settings.speaker_model_dir)
            instrument_diarizer(self.peer)
        self.load_seconds = time.perf_counter() - started
        self.rss_after_load_mb = peak_rss_mb()

    def run(self, system: str, samples: np.ndarray, recording) -> tuple[float, dict, dict]:
        PROFILE.take()
        started = time.perf_counter()
        if system == "plain_ru":
            out = run_plain(self.plain, samples, "ru")
        elif system == "plain_auto":
            out = run_plain(self.plain, samples, None)
        elif system == "plain_gigaam":
            out = run_plain_gigaam(self.plain, samples)
        elif system == "diarizer":
            out = run_diarizer(self.diarizer, recording)
        elif system == "diarizer_plain_peer":
            out = run_diarizer(self.peer, recording)
        elif system == "ours_kk_ru":
            out = run_ours(self.pipeline, recording, self.default_languages)
        elif system == "ours_ru":
            out = run_ours(self.pipeline, recording, ["ru"])
        elif system == "ours_gigaam_kk_ru":
            out = run_ours(self.pipeline, recording, self.default_languages, gigaam_summary)
        elif system == "ours_gigaam_ru":
            out = run_ours(self.pipeline, recording, ["ru"], gigaam_summary)
        else:
            raise ValueError(system)
        wall = time.perf_counter() - started
        return wall, out, PROFILE.take()


def add_stages(total: dict, stages: dict) -> None:
    for name, value in stages.items():
        entry = total.setdefault(name, {"seconds": 0.0, "calls": 0})
        entry["seconds"] += value["seconds"]
        entry["calls"] += value["calls"]


def stage_table(stages: dict, wall: float) -> dict:
    accounted = sum(value["seconds"] for value in stages.values())
    table = {
        name: {"seconds": round(value["seconds"], 3), "calls": value["calls"]}
        for name, value in sorted(stages.items(), key=lambda item: -item[1]["seconds"])
    }
    table["(outside every stage)"] = {"seconds": round(wall - accounted, 3), "calls": 0}
    return table


def grouped(stages: dict) -> dict:
    """Stages added up into the few groups the findings talk about."""
    groups: dict[str, float] = defaultdict(float)
    for name, value in stages.items():
        seconds = value["seconds"]
        if (
            name.startswith("ct2.generate")
            or name.startswith("engine.decode_python")
            or name in ("engine.loop_check", "fw.generate_with_fallback")
        ):
            key = "whisper decode" + _bracket(name)
        elif (
            name.startswith("ct2.align")
            or name.startswith("engine.align_python")
            or name in ("fw.word_timestamps", "fw.find_alignment")
        ):
            key = "whisper word alignment" + _bracket(name)
        elif name == "ct2.encoder":
            key = "whisper encoder"
        elif name in ("ct2.language_head", "fw.detect_language"):
            key = "whisper language head / detection"
        elif name in ("fw.features", "engine.features"):
            key = "whisper log-mel features"
        elif name == "fw.vad_silero":
            key = "faster-whisper VAD (Silero)"
        elif name == "plain.vad_silero":
            key = "plain VAD (Silero)"
        elif name == "gigaam.encoder":
            key = "GigaAM encoder + CTC head (ONNX)"
        elif name == "gigaam.features":
            key = "GigaAM log-mel features"
        elif name in ("gigaam.ctc_decode", "gigaam.tokens_to_text"):
            key = "GigaAM CTC greedy decode + tokens"
        elif name == "gigaam.input":
            key = "onnx-asr input checks"
        elif name == "engine.piece_words":
            key = "words from tokens"
        elif name == "engine.text_language":
            key = "language choice"
        elif name == "engine.punctuation":
            key = "punctuation"
        elif name == "engine.plan_pieces":
            key = "piece planning (cut points)"
        elif name == "diar.vad_silero":
            key = "diarizer VAD (Silero)"
        elif name == "diar.segmentation":
            key = "diarizer segmentation-3.0"
        elif name.startswith("diar.campp"):
            key = "diarizer CAM++ embeddings"
        elif name in ("diar.clustering", "diar.turns_from_windows", "diar.channel"):
            key = "diarizer clustering + turns"
        elif name in ("engine.language_choice", "engine.choice_text_language_id", "engine.readings"):
            key = "language choice"
        elif name == "engine.plan_chunks":
            key = "chunk planning"
        elif name in ("assembly", "notices"):
            key = "assembly"
        elif name == "audio.read":
            key = "audio reads"
        else:
            key = "other Python (" + name.split(".")[0] + ")"
        groups[key] += seconds
    return {name: round(value, 3) for name, value in sorted(groups.items(), key=lambda item: -item[1])}


def _bracket(name: str) -> str:
    if "[" not in name:
        return ""
    inside = name[name.index("[") :]
    return " " + inside


# ---------------------------------------------------------------- the files


def short_clips(count: int) -> list[tuple[str, np.ndarray, object]]:
    from bench.accuracy.sets import festvox_ru

    files = []
    for reference in festvox_ru(count):
        samples = asyncio.run(audio.decode_pcm16k(str(reference.audio)))
        files.append((reference.file_id, samples, reference))
    return files


def long_recording_file() -> Path:
    from bench.accuracy.sets import CACHE_DIR
    from bench.long_recording import hour_plan, write_recording

    path = CACHE_DIR / "long-recording" / "festvox-ru-1h-share0.1.ogg"
    if not path.is_file():
        print(f"[speed] building {path} (once)", file=sys.stderr, flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        plan, _speech = hour_plan(0.1)
        write_recording(path, 1, plan)
    return path


def measure(bench: Bench, files, work_dir: Path | None) -> dict:
    """Every system on every file, file by file."""
    per_system = {system: {"wall": [], "files": [], "stages": {}} for system in bench.systems}
    audio_seconds = 0.0
    for name, source in files:
        if isinstance(source, Path):  # a long recording: a PCM file as the worker makes it
            recording = asyncio.run(audio.decode_to_file(str(source), work_dir / "audio.pcm"))
            samples = recording.read(0, recording.sample_count)
        else:
            samples = source
            recording = audio.Recording.from_samples(samples)
        audio_seconds += recording.duration
        for system in bench.systems:
            wall, out, stages = bench.run(system, samples, recording)
            per_system[system]["wall"].append(wall)
            per_system[system]["files"].append({"file": name, "audio_seconds": round(recording.duration, 2),
                                                 "wall_seconds": round(wall, 3), **out})  # fmt: skip
            add_stages(per_system[system]["stages"], stages)
            print(f"[speed] {name} {system}: {wall:.2f} s", file=sys.stderr, flush=True)
    return {"audio_seconds": audio_seconds, "systems": per_system}


def report(measured: dict) -> dict:
    audio_seconds = measured["audio_seconds"]
    systems = {}
    for system, data in measured["systems"].items():
        wall = sum(data["wall"])
        systems[system] = {
            "wall_seconds": round(wall, 2),
            "rtf": round(wall / audio_seconds, 4),
            "stage_groups": grouped(data["stages"]),
            "stages": stage_table(data["stages"], wall),
            "files": data["files"],
        }
    walls = {system: value["wall_seconds"] for system, value in systems.items()}
    ratios = {}
    for ours in ("ours_kk_ru", "ours_ru", "ours_gigaam_kk_ru", "ours_gigaam_ru"):
        for plain in ("plain_ru", "plain_auto", "plain_gigaam"):
            if ("gigaam" in ours) != ("gigaam" in plain):
                continue
            for diarizer in ("diarizer", "diarizer_plain_peer"):
                if {ours, plain, diarizer} <= walls.keys():
                    ratios[f"{ours} / ({plain} + {diarizer})"] = round(
                        walls[ours] / (walls[plain] + walls[diarizer]), 3
                    )
    return {"audio_seconds": round(audio_seconds, 2), "wall_seconds": walls,
            "rtf": {system: value["rtf"] for system, value in systems.items()}, "ratios": ratios, "systems": systems}  # fmt: skip


# ---------------------------------------------------------------- the whole stack


def fresh_bytes(path: Path) -> bytes:
    """The WAV file with a comment chunk of random bytes after its data: the same sound, bytes never uploaded
    before (an identical upload may be answered from an earlier job's transcript)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", path
    info = b"INFO" + b"ICMT" + (16).to_bytes(4, "little") + os.urandom(8).hex().encode()
    chunk = b"LIST" + len(info).to_bytes(4, "little") + info
    body = data[8:] + chunk
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def measure_stack(files, language_settings: list[list[str] | None]) -> dict:
    """Each file uploaded as fresh bytes and awaited (JobFinished on NATS) in turn, per language setting."""
    import httpx

    from bench.stack import running_stack
    from kazru.adapters.bus import Bus
    from kazru.v1 import events_pb2

    async def uploads(settings, languages, some=None) -> dict:
        bus = await Bus.connect(settings, "bench-speed")
        finished: dict[str, float] = {}
        states: dict[str, str] = {}
        polled = [0]
        arrived = asyncio.Event()

        async def on_finished(msg) -> None:
            event = events_pb2.JobFinished.FromString(msg.data)
            # No assert here: an exception in a NATS callback is swallowed and the wait would never end.
            finished[event.job_id] = time.perf_counter()
            states[event.job_id] = event.state
            arrived.set()

        await bus.on_finished(on_finished)
        latencies = {}
        fields = {"language": ",".join(languages)} if languages else {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=600) as client:
            for name, reference in some or files:
                sent = time.perf_counter()
                response = await client.post(
                    "/api/v1/upload", files={"file": (reference.audio.name, fresh_bytes(reference.audio))}, data=fields
                )
                response.raise_for_status()
                job_id = response.json()["job_id"]
                # The finish event wakes us; the job's row is read every POLL_SECONDS too (in a first try here the
                # event never came, so the end is also seen by polling, at most POLL_SECONDS late).
                state = ""
                while job_id not in finished:
                    arrived.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(arrived.wait(), timeout=POLL_SECONDS)
                    if job_id in finished:
                        break
                    state = (await client.get(f"/api/v1/jobs/{job_id}")).json()["state"]
                    if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                        finished[job_id], states[job_id], polled[0] = time.perf_counter(), state, polled[0] + 1
                if states[job_id] != "SUCCEEDED":
                    raise RuntimeError(f"job {job_id} ({name}) ended {states[job_id]}")
                latencies[job_id] = (name, finished[job_id] - sent)
        await bus.close()
        print(f"[speed] stack: {len(latencies)} jobs, {polled[0]} ends seen by polling", file=sys.stderr, flush=True)
        return latencies

    results = {}
    with running_stack(upload_rate_limit_per_minute=0) as stack:
        # One job first, so that the transcriber's lazy loads (py3langid) are not in the figures.
        asyncio.run(uploads(stack.settings, None, files[:1]))
        for languages in language_settings:
            key = "stack_" + ("default" if languages is None else "_".join(languages))
            latencies = asyncio.run(uploads(stack.settings, languages))
            results[key] = latencies
        log = stack.root / "logs" / "transcriber.log"
        stages_by_job = {}
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("message") == "job succeeded":
                stages_by_job[entry["job_id"]] = {k: v for k, v in entry.items() if k.endswith("_seconds")}
    out = {}
    for key, latencies in results.items():
        total = sum(latency for _name, latency in latencies.values())
        stage_sums: dict[str, float] = defaultdict(float)
        for job in latencies:
            for name, value in stages_by_job.get(job, {}).items():
                stage_sums[name] += value
        out[key] = {
            "upload_to_succeeded_seconds": round(total, 2),
            "files": [{"file": name, "seconds": round(latency, 3)} for name, latency in latencies.values()],
            "transcriber_stage_sums": {name: round(value, 3) for name, value in sorted(stage_sums.items())},
        }
    return out


# ---------------------------------------------------------------- main


def machine() -> dict:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(value, 2) for value in load]}  # fmt: skip


def memory_per_system(args, systems: list[str]) -> dict:
    """Each system alone in a fresh process (this script, `--systems SYSTEM`, the same files): its peak resident
    memory (ru_maxrss: Python, the libraries, the models it loads, its work) and its wall time there."""
    out = {}
    for system in systems:
        with tempfile.TemporaryDirectory(prefix="kazru-speed-mem-") as folder:
            json_out = Path(folder) / "result.json"
            command = [sys.executable, "-m", "bench.speed.run", "--engine", args.engine, "--systems", system,
                       "--count", str(args.count), "--gigaam-model", str(args.gigaam_model), "--json-out", str(json_out)]  # fmt: skip
            command += ["--long"] if args.long else []
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
            child = json.loads(json_out.read_text())
        out[system] = {"peak_rss_mb": child["peak_rss_mb"], "rss_after_load_mb": child["rss_after_load_mb"],
                       "wall_seconds": child["wall_seconds"][system], "models_load_seconds": child["models_load_seconds"],
                       "load_average_at_start": child["machine"]["load_average_at_start"]}  # fmt: skip
        print(f"[speed] memory {system}: peak {out[system]['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the 1 h recording instead of the short clips")
    parser.add_argument("--stack", action="store_true", help="also the whole stack, upload -> SUCCEEDED (short clips)")
    parser.add_argument("--engine", choices=("whisper", "gigaam"), default="whisper", help="our pipeline's engine")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS + SYSTEMS_GIGAAM[:1] + SYSTEMS_GIGAAM[3:])
    parser.add_argument("--gigaam-model", type=Path, default=GIGAAM_FOLDER, help="random-weight GigaAM folder")
    parser.add_argument("--memory", action="store_true", help="also each system alone in a fresh process: peak RSS")
    parser.add_argument("--count", type=int, default=SHORT_CLIPS, help="festvox-ru clips (evenly spaced)")
    parser.add_argument("--no-profile", action="store_true", help="no stage timing (to check its overhead)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    args.systems = args.systems or list(SYSTEMS_GIGAAM if args.engine == "gigaam" else SYSTEMS)
    # Stopped from outside (a timeout): leave through the stack's clean-up, never leaving its servers behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.perf_counter()
    info = machine()
    clips = short_clips(args.count)
    gigaam_folder = gigaam_model_folder(args.gigaam_model) if args.engine == "gigaam" else None
    bench = Bench(args.systems, profile=not args.no_profile, engine=args.engine, gigaam_folder=gigaam_folder)
    # Warm-up: one clip through every system (lazy loads, first-call allocations), not counted.
    _name, warm_samples, _reference = clips[0]
    for system in bench.systems:
        bench.run(system, warm_samples, audio.Recording.from_samples(warm_samples))
    LEDGER.__init__()

    with tempfile.TemporaryDirectory(prefix="kazru-speed-") as work_dir:
        if args.long:
            path = long_recording_file()
            measured = measure(bench, [(path.name, path)], Path(work_dir))
            files_label = f"1 h recording ({path.name})"
        else:
            measured = measure(bench, [(name, samples) for name, samples, _ref in clips], None)
            files_label = f"{len(clips)} festvox-ru utterances (evenly spaced)"
    if args.engine == "gigaam":
        plain = {"plain_onnx_asr": {"model": f"{GIGAAM_MODEL} int8, RANDOM WEIGHTS at the real size "
                                    "(scripts/export_random_gigaam.py): words are meaningless, speed and memory only",
                                    "folder": str(gigaam_folder), "intra_op_threads": PLAIN_THREADS,
                                    "vad": "faster-whisper's Silero, onnx-asr with_vad's defaults (20 s, 100 ms, 30 ms)",
                                    "recognize": "one VAD segment per call, with_timestamps()"}}  # fmt: skip
    else:
        plain = {"plain_faster_whisper": {"cpu_threads": PLAIN_THREADS, "compute_type": "int8", "beam_size": 1,
                                          "vad_filter": True, "word_timestamps": True}}  # fmt: skip
    result = {
        "benchmark": "speed (issue 26)",
        "engine": args.engine,
        "files": files_label,
        "machine": info,
        **plain,
        "our_engine_cpu_threads_setting": bench.engine_threads,
        "default_languages": bench.default_languages,
        "profiled": not args.no_profile,
        "models_load_seconds": round(bench.load_seconds, 2),
        "rss_after_load_mb": bench.rss_after_load_mb,
        "peak_rss_mb": peak_rss_mb(),
        **report(measured),
    }  # fmt: skip
    result["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    if args.memory:
        result["memory_per_system_fresh_process"] = memory_per_system(args, args.systems)
    if args.stack and not args.long:
        result["stack"] = measure_stack([(name, ref) for name, _s, ref in clips], [None, ["ru"]])
    result["bench_wall_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=1, ensure_ascii=False)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

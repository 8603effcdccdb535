"""Languages heard on real speech: Whisper base's language head over every language, weighted by speech,
for recordings whose language is known, with the job allowed kk,ru. Prints one JSON line per file (the share
outside kk,ru and whether the job would get an UNSUPPORTED_LANGUAGE notice): the figures that set
services/transcriber/languages_heard.py's threshold.

    python bench/languages_heard.py --festvox-count 20 --librispeech-count 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from bench.accuracy.sets import festvox_ru
from kazru.adapters import audio
from kazru.domain.recognition import SpeechRegion
from kazru.settings import Settings
from services.transcriber.languages_heard import language_outside
from services.transcriber.pipeline import create_pipeline

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
ALLOWED = ("kk", "ru")


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    pipeline = create_pipeline(settings)
    files = sorted((CORPUS / "real").glob("*.flac"))
    files += [reference.audio for reference in festvox_ru(args.festvox_count)] if args.festvox_count else []
    voices = sorted((CORPUS / "librispeech_voices").glob("*/*.opus"))
    if args.librispeech_count:
        files += voices[:: max(1, len(voices) // args.librispeech_count)][: args.librispeech_count]
    for path in files:
        samples = await audio.decode_pcm16k(str(path), settings.ffmpeg_path)
        diarization = await asyncio.to_thread(pipeline._diarizer.diarize, samples)
        regions = [SpeechRegion(turn.start, turn.end, turn.speaker) for turn in diarization.turns]
        recognition = await asyncio.to_thread(
            pipeline.engine.recognize_blocking, samples, list(ALLOWED), regions, lambda fraction: None
        )
        heard = recognition.languages_heard
        print(json.dumps({
            "file": path.name, "seconds": round(len(samples) / 16000, 1), "heard": dict(list(heard.items())[:3]),
            "outside_allowed": round(sum(v for k, v in heard.items() if k not in ALLOWED), 3),
            "notice": language_outside(heard, ALLOWED, settings.supported_languages),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--festvox-count", type=int, default=20)
    parser.add_argument("--librispeech-count", type=int, default=12)
    asyncio.run(main(parser.parse_args()))

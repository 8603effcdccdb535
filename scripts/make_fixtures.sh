#!/usr/bin/env bash
# Generate the committed test speech: short Russian and Kazakh sentences spoken by
# espeak-ng in several voices, 16 kHz mono FLAC, with the text beside each file.
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox). Tests never run this.
set -euo pipefail
out="$(dirname "$0")/../tests/fixtures/audio"
mkdir -p "$out"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

say() {  # name voice words-per-minute text
  espeak-ng -v "$2" -s "$3" -w "$tmp/$1.wav" "$4"
  sox "$tmp/$1.wav" -r 16000 -c 1 -b 16 "$out/$1.flac"
  printf '%s\n' "$4" > "$out/$1.txt"
}

# Whisper base recognises this one almost word for word (ARCHITECTURE.md §5): the e2e test uses it.
say ru_weather_m3 ru+m3 150 "Погода в Алматы сегодня очень тёплая и солнечная."
say ru_weather_f3 ru+f3 140 "Погода в Алматы сегодня очень тёплая и солнечная."
say ru_meeting_m1 ru+m1 140 "Добрый день. Сегодня мы обсудим план работы на следующую неделю."
say ru_moscow_m7 ru+m7 130 "Москва является столицей России."
say kk_greeting_m3 kk+m3 120 "Сәлеметсіз бе, менің атым Айгерім."
say kk_city_f3 kk+f3 130 "Алматы Қазақстандағы ең үлкен қала."
say kk_weather_m2 kk+m2 120 "Бүгін ауа райы өте жақсы."
ls -l "$out"

# Two- and three-speaker conversations with exact reference turns (.rttm, .json) for the
# diarization and per-segment language tests; same generator as the accuracy benchmark.
"$(dirname "$0")/../.venv/bin/python" "$(dirname "$0")/../bench/accuracy/generate.py" --fixtures

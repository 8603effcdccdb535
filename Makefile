# KazRu-STT Pro — the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PROTOS := $(wildcard protos/kazru/v1/*.proto)

.PHONY: run test proto model fixtures bench bench-real bench-diarization bench-speed clean help
.DEFAULT_GOAL := help

help:
	@echo "make run    - install everything and run the whole service locally (KAZRU_ENGINE=gigaam: the Kazakh engine)"
	@echo "make test   - run the test suite (starts its own servers)"
	@echo "make bench  - run the benchmarks (prints JSON; tens of minutes)"
	@echo "make bench-real - the accuracy benchmark on real speech with its peers (~20 min on 2 cores)"
	@echo "make bench-diarization - diarizers on 300 real-voice conversations and the real recordings, the settings' sweep, a long recording (~50 min)"
	@echo "make proto  - regenerate the gRPC/protobuf code"
	@echo "make fixtures - regenerate the test speech (needs espeak-ng and sox)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,model,local]'
	rm -f $(VENV)/.installed-*; touch $@

kazru/v1/.generated: $(STAMP) $(PROTOS) scripts/protogen.py
	$(PY) scripts/protogen.py --out .
	touch $@

proto: kazru/v1/.generated

model: $(STAMP)
	$(PY) -m kazru.dev.model_install

run: proto model
	$(PY) -m kazru.dev.devstack

test: proto model
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Each prints JSON; figures go to BENCHMARKS.md. The accuracy corpus is generated, not committed.
bench: proto model
	$(PY) bench/pipeline_overhead.py
	$(PY) bench/export/run.py
	$(PY) bench/throughput.py
	$(PY) -m bench.long_recording --json-out bench/results/long-recording.json
	$(PY) bench/encryption.py
	$(PY) bench/accuracy/generate.py
	$(PY) bench/accuracy/run.py
	$(MAKE) bench-real
	$(MAKE) bench-diarization
	$(MAKE) bench-speed

# Real recordings (../shared/corpus/real and festvox-ru, fetched into bench/.cache) with the peers
# measured in the same run; needs apt-get and dpkg-deb for festvox-ru. Any engine and model folder:
# make bench-real BENCH_ARGS="--engine gigaam --model-dir DIR" (or KAZRU_ENGINE / KAZRU_GIGAAM_MODEL_DIR).
bench-real: proto model
	$(PY) bench/accuracy/real.py $(BENCH_ARGS) --json-out bench/results/accuracy-real.json

# 300 conversations of real voices (tuning and held-out speaker pools; built into bench/.cache, ~2 min) and
# ../shared/corpus/real: our diarizer and the plain peer, DER and the speaker count (issue 24).
bench-diarization: proto model
	$(PY) bench/diarization/conversations.py
	$(PY) bench/diarization/score.py --json-out bench/results/diarization.json
	$(PY) bench/diarization/tune.py embed
	$(PY) bench/diarization/tune.py sweep --json-out bench/results/diarization-tune.json
	$(PY) bench/diarization/long_run.py --json-out bench/results/diarization-long.json

# The default kk,ru path against plain faster-whisper + the diarizer alone, same run, same files (issue 26):
# 12 festvox-ru clips in-process and through the stack, the 1 h recording, and the GigaAM engine at its real size
# with random weights (bench/speed/FINDINGS.md has the stage profile).
bench-speed: proto model
	$(PY) -m bench.speed.run --stack --json-out bench/results/speed-short.json
	$(PY) -m bench.speed.run --long --json-out bench/results/speed-long.json
	$(PY) -m bench.speed.run --engine gigaam --json-out bench/results/speed-gigaam-short.json

fixtures:
	bash scripts/make_fixtures.sh

clean:
	rm -rf $(VENV) kazru/v1 .pytest_cache

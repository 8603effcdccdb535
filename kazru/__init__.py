"""Shared internals of KazRu-STT, in layers. Services import this package; they never import each
other, and nothing here imports a service.

- `kazru.domain`: pure rules with no I/O (errors, the job lifecycle, recognition results and the
  engine port, languages, export formats, the upload protocol). Imports no other layer but settings.
- `kazru.db`: PostgreSQL (SQLAlchemy models, Alembic migrations, repositories, API keys, usage).
- `kazru.adapters`: the other external systems: NATS bus, S3 storage and its encryption, ffmpeg
  audio, byte ranges, Yandex SpeechKit, the installed model files, and which driver errors mean an
  outage.
- `kazru.jobs`: use cases that end or enqueue a job across db, bus and storage (retention, outbox).
- `kazru.grpc`: gRPC plumbing shared by the services (error mapping, server, interceptors, and
  database rows as protobuf messages).
- `kazru.observability`: JSON logs, Prometheus metrics and OpenTelemetry traces; usable by every layer.
- `kazru.dev`: `make run`, the tests' servers and the model install; never imported by a running
  service (tests/unit/test_layering.py).
- At the top: `kazru.settings` (typed KAZRU_* settings, SpeechKit's as `settings.speechkit`; every
  layer reads them, so they import no other part of kazru), `kazru.cli` (the `kazru` command, the
  public API's client), `kazru.admin` (the `kazru-admin` command: API keys and usage, in PostgreSQL),
  `kazru.api_json` (the HTTP API's JSON shapes) and `kazru.service_runner` (how every service opens what it
  needs, serves, and stops in order).

Each subpackage's docstring says what belongs there and what it may import; tests/unit/test_layering.py
checks the rules that matter. Generated protobuf code lives in `kazru.v1` (made by `make proto`, not
tracked).
"""

import os

# gRPC's C core writes its own INFO lines (e.g. "Got goaway" when a peer stops) straight to
# stderr, bypassing the JSON logs. It reads this once, when grpc is first imported, which is
# after this package in every service; GRPC_VERBOSITY=INFO or DEBUG in the environment still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

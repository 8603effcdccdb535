"""Adapters: KazRu-STT's side of each external system except the database (`kazru.db`).

What belongs here: the NATS JetStream bus (`bus`), the S3 object store (`storage`) and its
encryption at rest (`encryption`), audio decoding with ffmpeg (`audio`), byte ranges of stored
objects, the Yandex SpeechKit engine (`speechkit`) and the choice of what forgets an engine's
external copies (`engine_copies`), what a finished model install is on disk (`model_files`), and
which infrastructure exceptions mean an outage (`outages`).
A module here may import drivers, `kazru.domain`, `kazru.observability`, `kazru.settings`,
`kazru.v1` and other adapters; never `kazru.jobs`, `kazru.grpc`, `kazru.dev` or a service.
"""

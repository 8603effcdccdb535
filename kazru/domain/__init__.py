"""The domain: KazRu-STT's pure rules, with no I/O.

What belongs here: the error vocabulary every adapter translates (`errors`), the job lifecycle
(`lifecycle`), language shares, export formats, the transcript (`transcript`) and what a person may
write into it (`transcript_edits`), what a speech engine returns and the port it
implements (`recognition`), the port that forgets an external engine's copy (`external_copies`) and
the upload protocol's rules. A module here may import the standard library, numpy, pydantic, the
generated protobuf messages (`kazru.v1`), `kazru.settings` and other domain modules. It never
imports `kazru.adapters`, `kazru.db`, `kazru.grpc`, `kazru.jobs`, `kazru.dev`, nor a driver
(sqlalchemy, nats, minio, grpc), not even under `if TYPE_CHECKING:`; tests/unit/test_layering.py
checks it. What a port receives is described here as a Protocol (`recognition.RecordedAudio`), which the
adapter's class satisfies as it is.
"""

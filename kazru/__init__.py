"""Shared internals of KazRu-STT: settings, database, storage, bus, audio, gRPC helpers.

Services import this package; they never import each other. Generated protobuf
code lives in `kazru.v1` (made by `make proto`, not tracked).
"""

import os

# gRPC's C core writes its own INFO lines (e.g. "Got goaway" when a peer stops) straight to
# stderr, bypassing the JSON logs. It reads this once, when grpc is first imported, which is
# after this package in every service; GRPC_VERBOSITY=INFO or DEBUG in the environment still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

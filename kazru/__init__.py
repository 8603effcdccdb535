"""Shared internals of KazRu-STT: settings, database, storage, bus, audio, gRPC helpers.

Services import this package; they never import each other. Generated protobuf
code lives in `kazru.v1` (made by `make proto`, not tracked).
"""

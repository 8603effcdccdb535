"""gRPC plumbing shared by every service: domain errors as gRPC statuses and back (`errors`), the
server with health and reflection (`server`), the interceptors that carry traces, logs context and
metrics (`interceptors`), and database rows as protobuf messages (`convert`).

A module here may import grpcio, `kazru.v1`, `kazru.domain`, `kazru.db`, `kazru.observability`,
`kazru.adapters` and `kazru.settings`; never `kazru.jobs`, `kazru.dev` or a service. Imports here are
absolute, so `import grpc` inside this package is grpcio, never this package.
"""

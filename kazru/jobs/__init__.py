"""Use cases that end or enqueue a job across the database, the bus and the object store.

What belongs here: `retention` (deleting, expiring and cancelling a job everywhere it lives) and
`outbox` (publishing a job's JobUploaded message once its row is committed, and republishing an
unconfirmed one). Modules here compose the layers below them: they may import `kazru.domain`,
`kazru.db`, `kazru.adapters`, `kazru.observability` and `kazru.settings`, never `kazru.grpc`,
`kazru.dev` or a service.
"""

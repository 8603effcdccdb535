"""Development and installation tools, not used by a running service: the local stack of `make run`
and the tests (`devstack`), what restarts a service of `make run` that dies (`supervisor`), the local
PostgreSQL, NATS and S3 servers it starts (`devservers`), the offline model install of `make model`
and the Dockerfile (`model_install`) and Debian packages fetched without root for tests
(`debian_packages`).

A module here may import anything in kazru (and `services` assets by resource name); nothing outside
kazru/dev, tests, bench and scripts imports it (tests/unit/test_layering.py checks it), so the
production image may lack its extra dependencies (the `local` extra).
"""

"""The HTTP API's routes, one router per resource; `services.gateway.http_api.create_app` joins them.

- `jobs`: upload, list, read, follow live, delete
- `transcript`: read, name and merge speakers, change a segment
- `files`: the original audio (ranges) and the exports
- `system`: health, queue status, usage
- `page`: the web page
- `dependencies`: what a route may ask for (the gateway, settings, the caller)

The OpenAI-compatible routes are `services.gateway.openai_api`; errors are `services.gateway.http_errors`.
"""

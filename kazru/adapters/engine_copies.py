"""What forgets the copies the configured engine keeps (the `kazru.domain.external_copies` port).

The gateway's and the janitor's composition roots call `for_engine(settings)`.
"""

from __future__ import annotations

from kazru.domain.external_copies import NO_EXTERNAL_COPIES, ExternalCopies
from kazru.settings import Settings


def for_engine(settings: Settings) -> ExternalCopies:
    """What forgets the configured engine's copies: SpeechKit's operations API, or nothing."""
    if settings.engine == "speechkit":
        from kazru.adapters.speechkit import SpeechKitClient  # its gRPC stubs load only where SpeechKit is used

        return SpeechKitClient(settings.speechkit)
    return NO_EXTERNAL_COPIES

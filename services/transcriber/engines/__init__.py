"""The speech engines, one module each, behind `kazru.domain.recognition.SpeechEngine`."""

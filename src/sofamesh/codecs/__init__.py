"""Sans-IO codecs: bytes in, events out; each converts its frames to the neutral model."""

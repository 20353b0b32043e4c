"""Wire layer: buffers, framing and codecs only (Cython, with a pure-Python twin for fuzzing and debugging)."""

"""Simulated devices built from the same profiles the bridges use: `factory.make_simulator`, `runner` (pty/TCP)."""

"""Shared by the tests: tiny random networks and golden fixtures (tiny.py), a marker face detector in insightface's
format (marker_detector.py), and the CLI tests' checkpoints, inputs and MP4 inspection (cli.py)."""

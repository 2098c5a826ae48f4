"""Load benchmark of the assistant (not part of the test suite): ``python -m bench.run``."""

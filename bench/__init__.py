"""Benchmarks and the soak run. A package only so that tests/soak can run the code of bench/soak.py."""

"""Throughput and latency benchmark of the gateway against the Lingma simulator driven directly.

Run it with ``python -m bench`` (or ``python bench/run.py``) from the repository root.
"""

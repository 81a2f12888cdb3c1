"""Benchmarks of the sync (``make bench`` runs ``benchmarks/bench_sync.py``)."""

"""Reproducible benchmarks of durable flows: master_sdk beside its peers.

Run ``python -m benchmarks --help``; see ``benchmarks/README.md`` for what each row measures.
"""

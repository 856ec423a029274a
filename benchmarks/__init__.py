"""Speed measurements of tiledseg; run from the repository root: ``python -m benchmarks.NAME``."""

"""Run presets shipped with the package: ci (tiny), quick (default, CPU minutes), paper64 (GPU)."""

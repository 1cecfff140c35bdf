"""LoKey benchmarks: each returns figures with a ratio against a limit measured in the same run;
``python -m bench`` (``lokey bench``) runs them all and prints one table."""

"""trio_pipe benchmarks: ``nox -s bench`` (quick smoke) or ``nox -s bench -- --full``."""

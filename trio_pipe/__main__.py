"""``python -m trio_pipe ...`` is ``trio-pipe ...``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m benchmarks``"""

import sys

from .cli import main

# Agents are spawned processes that re-import this module as __mp_main__: run only when main.
if __name__ == "__main__":
    sys.exit(main())

"""``python -m examples.checkin_game --help``"""

import sys

from .cli import main

sys.exit(main())

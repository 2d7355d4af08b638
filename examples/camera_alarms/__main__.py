"""``python -m examples.camera_alarms``: see ``cli.py``."""

from .cli import main

raise SystemExit(main())

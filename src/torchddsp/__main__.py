"""``python -m torchddsp``: the same as the ``torchddsp`` command."""

from .cli import main

raise SystemExit(main())

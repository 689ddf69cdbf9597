"""``python -m cli``: the ``scheduler`` command."""

import sys

from cli.main import main

sys.exit(main())

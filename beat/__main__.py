"""``python -m beat``: run the beat service with settings from the environment."""

from beat.service import main

raise SystemExit(main())

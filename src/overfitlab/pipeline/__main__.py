"""``python -m overfitlab.pipeline``: generate, check or add a study's ``dvc.yaml``."""

import sys

from . import main

sys.exit(main())

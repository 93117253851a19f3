"""python -m tests.soak: see docs/soak.md."""

import sys

from tests.soak.run import main

sys.exit(main())

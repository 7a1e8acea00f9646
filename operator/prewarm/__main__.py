import sys

from prewarm.cli import main

sys.exit(main())

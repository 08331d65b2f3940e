import sys

from labquake.cli import main

sys.exit(main())

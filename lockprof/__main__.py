import sys

from lockprof.cli import main

sys.exit(main())

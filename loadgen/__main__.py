import sys

from loadgen.cli.app import main

sys.exit(main())

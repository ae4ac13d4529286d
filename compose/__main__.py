import sys

from unity.compose.cli import main

sys.exit(main())

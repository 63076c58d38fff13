import sys

from clave.cli import main

sys.exit(main())

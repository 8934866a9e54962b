import sys

from xspecvae.cli import main

sys.exit(main())

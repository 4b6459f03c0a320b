"""``python -m tessera_client`` is the ``tessera`` command."""

import sys

from tessera_client.cli import main

sys.exit(main())

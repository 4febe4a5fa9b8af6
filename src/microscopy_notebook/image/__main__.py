"""``python -m microscopy_notebook.image``: see `build`."""

import sys

from microscopy_notebook.image.build import main

sys.exit(main())

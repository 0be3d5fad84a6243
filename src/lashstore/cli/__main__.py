"""`python -m lashstore.cli`"""

from . import main

raise SystemExit(main())

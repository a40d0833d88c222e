"""``python -m sap_rag.eval ...`` runs ``sap-rag eval``."""

import sys

from .cli import eval_main

if __name__ == "__main__":
    sys.exit(eval_main())

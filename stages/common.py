"""What every stage shares: its params, logging, the seed."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from selfsup.config import Params, ParamsError, load_params

PARAMS_FILE = "params.yaml"


def params() -> Params:
    """The validated params of this run (`SELFSUP_PARAMS` overrides the file's path).

    A bad file stops the stage with one line naming the file, the key and what is accepted.
    """
    path = Path(os.environ.get("SELFSUP_PARAMS", PARAMS_FILE))
    try:
        return load_params(path)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("SELFSUP_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

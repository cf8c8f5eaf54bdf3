"""An app that configures logging itself, at import: `serve tests.logging_app:config` must
keep that configuration (its format and its INFO level), not replace it."""

from __future__ import annotations

import logging

from tests.cli_app import config

logging.basicConfig(level=logging.INFO, format="APP %(name)s %(levelname)s %(message)s")

__all__ = ["config"]

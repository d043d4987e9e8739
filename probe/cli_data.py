"""Data and feature commands: ``probe datasets``, ``probe extract``."""

from __future__ import annotations

COMMANDS: list = []

"""probe's version, stored in every record, cache entry and saved model.

A module of its own so that lower layers can read it without importing the package's public API.
Raised whenever the record format, a cache key or the command line changes (see CHANGELOG.md).
"""

__version__ = "0.4.0"

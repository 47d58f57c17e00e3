"""The project's own errors. Every error a user can cause (bad data, bad
settings, a missing file, a split that would leak) derives from `UserError`;
entry points turn it into one line and a non-zero exit. Checks of user data
raise these, never `assert` (which `python -O` removes)."""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; its message says what and where, in one line."""


class ProtocolError(UserError, ValueError):
    """A split or label set that breaks its protocol: leakage across the test
    boundary, an empty part, labels outside the protocol's classes, folds
    outside the dataset's official set."""

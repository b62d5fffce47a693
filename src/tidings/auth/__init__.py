"""Identity and authorisation: tokens, API keys, revocation, origins.

:class:`~tidings.auth.authenticator.Authenticator` is the one place a request's
credential becomes an :class:`~tidings.identity.Identity`; the same identity then
decides subscribe, publish, history and admin access everywhere.
"""

from tidings.auth.authenticator import Authenticator
from tidings.auth.tokens import TokenVerifier, mint_token

__all__ = ["Authenticator", "TokenVerifier", "mint_token"]

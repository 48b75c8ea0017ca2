"""Third-party login: providers (GitHub, Google, any OpenID Connect issuer, a dev provider), the
browser-bound flow state, and the service that turns a callback into a stored user."""

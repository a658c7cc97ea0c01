"""Identity: who a person is, proven by a local password (+ TOTP) or the force's IdP.

Two ways in, chosen by `settings.identity_mode` ("local", "oidc" or "both"):

- local: `signin.login` checks an argon2id password (and a TOTP code when the user has a
  secret) and issues a short-lived JWT signed by this store (EdDSA/Ed25519, key in
  `{data_dir}/keys/jwt.key`, 0600, made on first use). Ed25519 rather than HS256: the key
  that verifies can be handed out without handing out the power to mint tokens, and the
  algorithm is pinned to exactly `EdDSA` both ways.
- oidc: bearer tokens from the force's identity provider, checked against its JWKS
  (issuer, audience, expiry and algorithm pinned to `oidc_algorithms`, asymmetric only).
  The role comes from a claim; first sight of a person provisions a User row (with an
  unusable password) and a `user.provisioned` ledger entry, so the ledger can name them.
  The UI signs people in through the IdP with the authorization code flow and PKCE.

`signin.principal_from_token` turns either kind of token into the `Principal` routes
receive. For local tokens the role, the enabled flag and the lock are re-read from the
database on every request: the token only says who, never what they may do, so disabling a
user takes effect at once rather than when their token expires.

The modules, by concept (import from them; this package re-exports nothing):

- `signin`: password sign-in (`login`) and `principal_from_token`;
- `tokens`: the store's own JWTs: issuing, checking, revoking at sign-out;
- `totp`: TOTP codes, recovery codes, setting up a secret;
- `lockout`: the lock-out, the per-address rate limit, sign-in counts and ledger entries;
- `oidc`: the IdP's bearer tokens, provisioning, and the browser sign-in through it;
- `state`: what each context keeps (signing key, failure window, JWKS cache) and the
  settings check.
"""

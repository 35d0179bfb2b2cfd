-- Console and API accounts. A local account has a password hash (argon2); an account from single
-- sign-on has an external id (issuer + subject) and the claims it presented at its last sign-in,
-- which the administrator's "Lookup" shows. Roles: administrator, auditor, user.
CREATE TABLE users (
    id {id},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    addresses TEXT NOT NULL,
    password_hash TEXT,
    external_id TEXT,
    last_claims TEXT,
    last_login_at BIGINT,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_login ON users (login);

-- Signed-in browsers. Only a hash of the cookie's value is kept.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    ip TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);

-- Keys for scripts: a key acts as its user, with at most the role it was made with.
CREATE TABLE api_keys (
    id {id},
    user_id BIGINT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked BIGINT NOT NULL
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);

-- Single sign-on: an identity attribute (claim) and a value give a role; the lowest priority wins.
CREATE TABLE role_assignments (
    id {id},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    priority BIGINT NOT NULL,
    attribute TEXT NOT NULL,
    value TEXT NOT NULL,
    role TEXT NOT NULL
);

-- Sign-ons in flight (OpenID Connect state → nonce and PKCE verifier), consumed once.
CREATE TABLE login_requests (
    state TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Settings changed in the console (JSON by key), applied without a restart.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
)

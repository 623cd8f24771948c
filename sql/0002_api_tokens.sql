-- Operator API tokens. Only the SHA-256 of a token (lowercase hex) is stored:
-- a leaked table does not leak usable tokens, and 256-bit random tokens need
-- no slow hash. Revoked and expired rows are kept for the audit trail, so a
-- name stays taken after revocation.
--
-- Names may not be all digits: commands accept "id or name", and a numeric
-- name would be ambiguous with an id.

CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL
        CONSTRAINT api_tokens_name_check CHECK (length(name) BETWEEN 1 AND 100 AND name !~ '^[0-9]+$'),
    token_hash   text        NOT NULL
        CONSTRAINT api_tokens_token_hash_check CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NULL,
    revoked_at   timestamptz NULL,
    last_used_at timestamptz NULL
);

CREATE UNIQUE INDEX api_tokens_name_key ON api_tokens (name);
-- Every verification that misses the cache looks a token up by its hash.
CREATE UNIQUE INDEX api_tokens_token_hash_key ON api_tokens (token_hash);

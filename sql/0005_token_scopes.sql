-- What a token may do: the scopes of the contract's TokenAuth requirements
-- (`admin` is all of them). NULL is full access: every token issued before
-- this migration has it, so no existing client is refused anything, and
-- `token issue` without `--scope` still issues such a token.
-- A nullable column without a default rewrites no rows; the CHECK costs one
-- scan to validate, of a table of a few operator tokens.
ALTER TABLE api_tokens ADD COLUMN scopes text[] NULL
    CONSTRAINT api_tokens_scopes_check CHECK (
        cardinality(scopes) > 0
        AND array_position(scopes, NULL) IS NULL
        AND scopes <@ ARRAY['users:read', 'users:write', 'tasks:read', 'tasks:write', 'admin']::text[]
    );

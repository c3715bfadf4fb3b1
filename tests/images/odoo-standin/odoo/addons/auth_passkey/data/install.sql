-- WebAuthn passkeys (auth.passkey.key): a passkey is a login, owned by the user who created it.
-- public_key is added by the model's init, outside the ORM.
CREATE TABLE auth_passkey_key (
    id serial PRIMARY KEY,
    create_uid integer REFERENCES res_users ON DELETE SET NULL,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid integer REFERENCES res_users ON DELETE SET NULL,
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name varchar NOT NULL,
    credential_identifier varchar NOT NULL,
    sign_count integer DEFAULT 0,
    public_key varchar,
    CONSTRAINT auth_passkey_key_unique_identifier UNIQUE (credential_identifier)
);

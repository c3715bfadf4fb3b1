-- OAuth2 providers users sign in with (auth.oauth.provider).
CREATE TABLE auth_oauth_provider (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    client_id varchar,
    auth_endpoint varchar NOT NULL,
    scope varchar,
    validation_endpoint varchar NOT NULL,
    data_endpoint varchar,
    enabled boolean,
    css_class varchar,
    body jsonb NOT NULL,
    sequence integer
);

-- Each user's provider, id there, and last access token (Odoo also accepts that token as the
-- user's password).
ALTER TABLE res_users
    ADD COLUMN oauth_provider_id integer REFERENCES auth_oauth_provider ON DELETE SET NULL,
    ADD COLUMN oauth_uid varchar,
    ADD COLUMN oauth_access_token varchar,
    ADD CONSTRAINT res_users_uniq_users_oauth_provider_oauth_uid UNIQUE (oauth_provider_id, oauth_uid);

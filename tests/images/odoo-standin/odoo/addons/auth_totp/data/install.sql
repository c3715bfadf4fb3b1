-- The TOTP secret of each user, base32 in clear: whoever reads it generates valid codes.
ALTER TABLE res_users ADD COLUMN totp_secret varchar;

-- Trusted browsers (auth_totp.device) skip the second factor; the model reuses the layout of
-- res_users_apikeys (made by the same init), keys hashed.
CREATE TABLE auth_totp_device (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    user_id integer NOT NULL REFERENCES res_users ON DELETE CASCADE,
    scope varchar,
    expiration_date timestamp,
    index varchar(8) NOT NULL CHECK (char_length(index) = 8),
    key varchar NOT NULL,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX auth_totp_device_user_id_index_idx ON auth_totp_device (user_id, index);

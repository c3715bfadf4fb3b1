-- Tables and records of `base` (the real ones have many more columns).
-- ir_config_parameter's generated keys and the company logo are written by the loader.
CREATE TABLE res_partner (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name varchar,
    company_id integer,
    type varchar DEFAULT 'contact',
    email varchar,
    phone varchar,
    is_company boolean DEFAULT false,
    active boolean DEFAULT true
);

CREATE TABLE res_company (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name varchar NOT NULL,
    partner_id integer NOT NULL REFERENCES res_partner,
    email varchar,
    phone varchar,
    active boolean DEFAULT true
);

CREATE TABLE res_users (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    login varchar NOT NULL UNIQUE,
    password varchar,
    partner_id integer NOT NULL REFERENCES res_partner,
    company_id integer NOT NULL REFERENCES res_company,
    share boolean DEFAULT false,
    active boolean DEFAULT true
);

-- API keys (res.users.apikeys): made by the model's own init, not by the ORM. Only a hash of
-- each key is stored, with its first 8 characters as the lookup index.
CREATE TABLE res_users_apikeys (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    user_id integer NOT NULL REFERENCES res_users ON DELETE CASCADE,
    scope varchar,
    expiration_date timestamp,
    index varchar(8) NOT NULL CHECK (char_length(index) = 8),
    key varchar NOT NULL,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX res_users_apikeys_user_id_index_idx ON res_users_apikeys (user_id, index);

CREATE TABLE ir_config_parameter (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    key varchar NOT NULL UNIQUE,
    value text NOT NULL
);

CREATE TABLE ir_mail_server (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name varchar NOT NULL,
    from_filter varchar,
    smtp_host varchar,
    smtp_port integer DEFAULT 25,
    smtp_authentication varchar DEFAULT 'login',
    smtp_user varchar,
    smtp_pass varchar,
    smtp_encryption varchar DEFAULT 'none',
    sequence integer DEFAULT 10,
    active boolean DEFAULT true
);

CREATE TABLE ir_act_server (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name jsonb NOT NULL,
    type varchar DEFAULT 'ir.actions.server',
    usage varchar DEFAULT 'ir_actions_server',
    state varchar NOT NULL DEFAULT 'object_write',
    model_name varchar,
    code text,
    webhook_url varchar
);

CREATE TABLE ir_cron (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    ir_actions_server_id integer NOT NULL REFERENCES ir_act_server ON DELETE RESTRICT,
    cron_name varchar,
    user_id integer NOT NULL,
    active boolean DEFAULT true,
    interval_number integer DEFAULT 1,
    interval_type varchar DEFAULT 'months',
    nextcall timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    lastcall timestamp,
    priority integer DEFAULT 5
);

CREATE TABLE ir_attachment (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name varchar NOT NULL,
    res_model varchar,
    res_field varchar,
    res_id integer,
    company_id integer,
    type varchar NOT NULL DEFAULT 'binary',
    url varchar(1024),
    public boolean DEFAULT false,
    access_token varchar,
    db_datas bytea,
    store_fname varchar,
    file_size integer,
    checksum varchar(40),
    mimetype varchar
);

CREATE TABLE ir_ui_view (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name varchar NOT NULL,
    key varchar,
    model varchar,
    type varchar,
    arch_db jsonb,
    inherit_id integer REFERENCES ir_ui_view ON DELETE CASCADE,
    mode varchar DEFAULT 'primary',
    priority integer DEFAULT 16,
    active boolean DEFAULT true
);

INSERT INTO res_partner (id, name, email, phone, is_company) VALUES
    (1, 'YourCompany', 'info@yourcompany.com', '+1 555-555-5556', true),
    (2, 'OdooBot', 'odoobot@example.com', NULL, false),
    (3, 'Administrator', 'admin@yourcompany.example.com', NULL, false);
SELECT setval('res_partner_id_seq', 3);

INSERT INTO res_company (id, name, partner_id, email, phone) VALUES
    (1, 'YourCompany', 1, 'info@yourcompany.com', '+1 555-555-5556');
SELECT setval('res_company_id_seq', 1);
UPDATE res_partner SET company_id = 1;

INSERT INTO res_users (id, login, password, partner_id, company_id, active) VALUES
    (1, '__system__', NULL, 2, 1, false),
    (2, 'admin', '$pbkdf2-sha512$600000$standin$standin', 3, 1, true);
SELECT setval('res_users_id_seq', 2);

INSERT INTO ir_model_data (module, name, model, res_id, noupdate) VALUES
    ('base', 'main_partner', 'res.partner', 1, true),
    ('base', 'partner_root', 'res.partner', 2, true),
    ('base', 'partner_admin', 'res.partner', 3, true),
    ('base', 'main_company', 'res.company', 1, true),
    ('base', 'user_root', 'res.users', 1, true),
    ('base', 'user_admin', 'res.users', 2, true);

WITH action AS (
    INSERT INTO ir_act_server (name, state, usage, model_name, code)
    VALUES ('{"en_US": "Base: Auto-vacuum internal data"}', 'code', 'ir_cron', 'ir.autovacuum',
            'model._run_vacuum_cleaner()')
    RETURNING id
), cron AS (
    INSERT INTO ir_cron (ir_actions_server_id, cron_name, user_id, interval_number, interval_type)
    SELECT id, 'Base: Auto-vacuum internal data', 1, 1, 'days' FROM action
    RETURNING id
)
INSERT INTO ir_model_data (module, name, model, res_id, noupdate)
SELECT 'base', 'autovacuum_job', 'ir.cron', id, true FROM cron;

WITH action AS (
    INSERT INTO ir_act_server (name, state, usage, model_name, code)
    VALUES ('{"en_US": "Base: Portal Users Deletion"}', 'code', 'ir_cron', 'res.users.deletion',
            'model._gc_portal_users()')
    RETURNING id
), cron AS (
    INSERT INTO ir_cron (ir_actions_server_id, cron_name, user_id, interval_number, interval_type)
    SELECT id, 'Base: Portal Users Deletion', 1, 1, 'days' FROM action
    RETURNING id
)
INSERT INTO ir_model_data (module, name, model, res_id, noupdate)
SELECT 'base', 'ir_cron_res_users_deletion', 'ir.cron', id, true FROM cron;

INSERT INTO ir_config_parameter (key, value) VALUES
    ('web.base.url', 'http://localhost:8069'),
    ('base.login_cooldown_after', '10'),
    ('base.login_cooldown_duration', '60');

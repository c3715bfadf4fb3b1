-- The module registry, created when a database is initialised (Odoo's base_data.sql).
CREATE TABLE ir_module_module (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    name varchar NOT NULL UNIQUE,
    author varchar,
    shortdesc jsonb,
    summary jsonb,
    state varchar(16),
    latest_version varchar,
    auto_install boolean DEFAULT false,
    application boolean DEFAULT false,
    demo boolean DEFAULT false,
    license varchar(32)
);

CREATE TABLE ir_module_module_dependency (
    id serial PRIMARY KEY,
    name varchar,
    module_id integer REFERENCES ir_module_module ON DELETE CASCADE,
    auto_install_required boolean DEFAULT true
);

CREATE TABLE ir_model_data (
    id serial PRIMARY KEY,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    noupdate boolean DEFAULT false,
    name varchar NOT NULL,
    module varchar NOT NULL,
    model varchar NOT NULL,
    res_id integer
);

CREATE TABLE payment_provider (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    code varchar NOT NULL,
    state varchar NOT NULL DEFAULT 'disabled',
    company_id integer NOT NULL DEFAULT 1
);

INSERT INTO payment_provider (name, code, state) VALUES
    ('{"en_US": "Demo"}', 'demo', 'disabled'),
    ('{"en_US": "Wire Transfer"}', 'custom', 'disabled');

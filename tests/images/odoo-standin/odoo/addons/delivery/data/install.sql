CREATE TABLE delivery_carrier (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    delivery_type varchar NOT NULL DEFAULT 'fixed',
    prod_environment boolean DEFAULT false,
    active boolean DEFAULT true
);

INSERT INTO delivery_carrier (name, delivery_type) VALUES ('{"en_US": "Standard delivery"}', 'fixed');
